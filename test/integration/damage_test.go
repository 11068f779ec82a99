package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// dataPacks lists the data pack files of a file:// repository, largest
// first.
func dataPacks(t *testing.T, repo string) []string {
	t.Helper()
	var packs []string
	filepath.WalkDir(filepath.Join(strings.TrimPrefix(repo, "file://"), "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			packs = append(packs, p)
		}
		return nil
	})
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	slices.SortFunc(packs, func(a, b string) int { return int(size(b) - size(a)) })
	return packs
}

// restoreDamaged runs an in-place restore that must fail on damage and
// returns the damaged files per node from its --output json.
func restoreDamaged(t *testing.T, a *agent, backupID string) (*fsm.Operation, map[string][]wire.DamagedFile) {
	t.Helper()
	res := a.cli("restore", backupID, "--wait", "--output", "json")
	if res.code == 0 {
		t.Fatalf("restore of a damaged backup exited 0:\n%s", res.stdout)
	}
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		t.Fatalf("restore --output json printed non-JSON: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	if op.State != fsm.OpFailed {
		t.Fatalf("restore state %s, want failed", op.State)
	}
	damaged := map[string][]wire.DamagedFile{}
	for _, st := range op.Steps {
		if st.Name != wire.StepRestore {
			continue
		}
		var r wire.RestoreResult
		if err := json.Unmarshal(st.Result, &r); err != nil {
			t.Fatalf("restore result of %s (%s): %v", st.Node, st.State, err)
		}
		if int64(len(r.Damaged)) != r.DamagedTotal {
			t.Fatalf("node %s: %d damaged listed of %d", st.Node, len(r.Damaged), r.DamagedTotal)
		}
		if r.DamagedTotal > 0 && (st.State != fsm.StepFailed || !strings.Contains(st.Error, "damaged")) {
			t.Fatalf("node %s: step %s (%q) with %d damaged files", st.Node, st.State, st.Error, r.DamagedTotal)
		}
		damaged[st.Node] = r.Damaged
	}
	return &op, damaged
}

// TestRestoreSurvivesDamage: a two-node backup, one data pack with a
// flipped byte and another deleted. The restore puts back every file
// whose chunks are intact, byte for byte, on both nodes, names each file
// it left out with its chunk and pack (JSON and text), exits non-zero,
// and leaves an older file at a damaged path as it was. Then a snapshot
// object removed from the repository makes verify fail naming the backup.
func TestRestoreSurvivesDamage(t *testing.T) {
	c := startCluster(t, 2, "dmg", "", "")
	for i, a := range c.agents {
		r := rand.New(rand.NewPCG(uint64(i+50), 3))
		for j := range 150 {
			writeFile(t, filepath.Join(a.root, fmt.Sprintf("d%d", j%7), fmt.Sprintf("f%03d.bin", j)), randomBytes(r, 96<<10+j), 0o644)
		}
	}
	want := map[string]map[string]entryDesc{}
	for _, a := range c.agents {
		want[a.nodeID] = describeTree(t, a.root)
	}
	op := c.agents[0].backupWait("--id", "damage-b1")

	packs := dataPacks(t, c.repo)
	if len(packs) < 3 {
		t.Fatalf("%d data packs, want at least 3 to damage two", len(packs))
	}
	flipped, deleted := packs[0], packs[1]
	b, err := os.ReadFile(flipped)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(flipped, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	damagedPacks := map[string]bool{filepath.Base(flipped): true, filepath.Base(deleted): true}

	// Empty both roots: what the restore leaves absent is what it named.
	for _, a := range c.agents {
		ents, _ := os.ReadDir(a.root)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(a.root, e.Name()))
		}
	}
	rop, damaged := restoreDamaged(t, c.agents[1], op.BackupID)
	seenPacks := map[string]bool{}
	total := 0
	for _, a := range c.agents {
		got := describeTree(t, a.root)
		named := map[string]bool{}
		for _, f := range damaged[a.nodeID] {
			named[f.Path] = true
			total++
			if len(f.Chunks) == 0 {
				t.Errorf("%s %s: no chunk named", a.nodeID, f.Path)
			}
			for _, ch := range f.Chunks {
				if !damagedPacks[ch.Pack] {
					t.Errorf("%s %s: chunk %s in pack %q, not one of the damaged packs", a.nodeID, f.Path, ch.ID, ch.Pack)
				}
				seenPacks[ch.Pack] = true
				if ch.Pack == filepath.Base(deleted) && ch.Problem != wire.DamageMissing {
					t.Errorf("%s %s: chunk of the deleted pack is %q", a.nodeID, f.Path, ch.Problem)
				}
			}
			if _, ok := got[f.Path]; ok {
				t.Errorf("%s: damaged %s is in the restored tree", a.nodeID, f.Path)
			}
		}
		// Every file not named is back byte for byte; every file absent is named.
		for p, w := range want[a.nodeID] {
			if w.kind != "file" {
				continue
			}
			g, ok := got[p]
			switch {
			case named[p]:
			case !ok:
				t.Errorf("%s: %s neither restored nor named damaged", a.nodeID, p)
			case g != w:
				t.Errorf("%s: %s restored as %+v, want %+v", a.nodeID, p, g, w)
			}
		}
		for p := range got {
			if strings.Contains(p, ".crayfish-tmp-") {
				t.Errorf("%s: temporary file %s left", a.nodeID, p)
			}
		}
	}
	if total == 0 || len(seenPacks) != 2 {
		t.Fatalf("%d damaged files naming packs %v, want files of both damaged packs", total, seenPacks)
	}
	t.Logf("restore named %d damaged files of %d (150 per node)", total, 2*150)

	// The text output lists them too.
	st := c.agents[0].cli("status", rop.ID)
	if !strings.Contains(st.stdout, "Damaged files") || !strings.Contains(st.stdout, filepath.Base(deleted)) {
		t.Errorf("status does not list the damage:\n%s", st.stdout)
	}

	// An older file at a damaged path stays as it was.
	var node1, path string
	for n, files := range damaged {
		if len(files) > 0 {
			node1, path = n, files[0].Path
			break
		}
	}
	var holder *agent
	for _, a := range c.agents {
		if a.nodeID == node1 {
			holder = a
		}
	}
	older := filepath.Join(holder.root, filepath.FromSlash(path))
	writeFile(t, older, []byte("older content"), 0o644)
	restoreDamaged(t, c.agents[0], op.BackupID)
	if got := readFileString(t, older); got != "older content" {
		t.Errorf("older %s replaced by %d bytes", path, len(got))
	}

	// A snapshot object removed: verify compares with the history.
	snap := filepath.Join(strings.TrimPrefix(c.repo, "file://"), "snapshots", op.BackupID)
	if err := os.Remove(snap); err != nil {
		t.Fatal(err)
	}
	res := c.agents[0].cli("verify", "--wait")
	if res.code == 0 || !strings.Contains(res.stdout+res.stderr, op.BackupID) || !strings.Contains(res.stdout+res.stderr, op.ID) {
		t.Fatalf("verify after a snapshot object was removed: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}
