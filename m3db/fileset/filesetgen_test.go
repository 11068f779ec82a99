package fileset

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"
	"time"

	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// manifestEntry is one fileset of filesetgen's JSON manifest.
type manifestEntry struct {
	Kind       Kind   `json:"kind"`
	Namespace  string `json:"namespace"`
	Shard      uint32 `json:"shard"`
	BlockStart int64  `json:"blockStart"`
	Volume     int    `json:"volume"`
	Legacy     bool   `json:"legacy"`
	Dir        string `json:"dir"`
	Prefix     string `json:"prefix"`
	Damage     string `json:"damage"`
	Expect     string `json:"expect"`
	File       string `json:"file"`
	SnapshotID string `json:"snapshotId"`
}

// TestRealFilesets classifies filesets written by M3 v1.5.0's own writers
// (data, snapshot with its metadata, FST index, legacy names) and damaged
// copies of them: the complete ones are OK, each damaged one is named
// with the reason and the file filesetgen says it damaged.
func TestRealFilesets(t *testing.T) {
	bin := m3dbtest.FilesetGen(t)
	root := t.TempDir()
	cmd := exec.Command(bin, "-dir", root, "-ns", "metrics", "-shard", "3",
		"-block", "1700006400000000000", "-blocksize", "2h", "-series", "40", "-points", "30",
		"-snapshot", "-index", "-legacy", "-damage", "all")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("filesetgen: %v\n%s", err, stderr.String())
	}
	var manifest struct {
		Filesets []manifestEntry `json:"filesets"`
	}
	if err := json.Unmarshal(out, &manifest); err != nil {
		t.Fatalf("manifest: %v\n%s", err, out)
	}
	damaged := map[string]bool{}
	for _, e := range manifest.Filesets {
		if e.Damage != "" {
			damaged[e.Damage] = true
		}
	}
	for _, d := range []string{"no-checkpoint", "checkpoint-mismatch", "data-altered", "missing-data",
		"index-no-checkpoint", "index-segment-altered"} {
		if !damaged[d] {
			t.Errorf("filesetgen wrote no fileset with damage %s", d)
		}
	}

	r, err := ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Other) != 0 {
		t.Errorf("files in no fileset: %v", r.Other)
	}
	if len(r.Filesets) != len(manifest.Filesets) {
		t.Errorf("scan found %d filesets, filesetgen wrote %d", len(r.Filesets), len(manifest.Filesets))
		for _, f := range r.Filesets {
			t.Logf("found %s", f)
		}
	}
	for _, e := range manifest.Filesets {
		name := e.Dir + "/" + e.Prefix
		if e.Damage != "" {
			name += " (" + e.Damage + ")"
		}
		f, ok := findFileset(r, e)
		if !ok {
			t.Errorf("%s: not found by the scan", name)
			continue
		}
		checkExpectation(t, name, f, e)
		t.Logf("%-60s %s", name, verdict(f))
	}
}

func verdict(f Fileset) string {
	if f.OK() {
		return "OK"
	}
	return f.Problem.Error()
}

func findFileset(r Report, e manifestEntry) (Fileset, bool) {
	for _, f := range r.Filesets {
		if f.Kind != e.Kind {
			continue
		}
		if e.Kind == SnapshotMetadata {
			if f.SnapshotID == strings.ReplaceAll(e.SnapshotID, "-", "") && f.Volume == 0 {
				return f, true
			}
			continue
		}
		if f.Namespace == e.Namespace && f.BlockStart == e.BlockStart && f.Volume == e.Volume &&
			f.Legacy == e.Legacy && (e.Kind == Index || f.Shard == e.Shard) {
			return f, true
		}
	}
	return Fileset{}, false
}

func checkExpectation(t *testing.T, name string, f Fileset, e manifestEntry) {
	t.Helper()
	for _, p := range f.Files {
		if path.Dir(p) != e.Dir || !strings.HasPrefix(path.Base(p), e.Prefix+"-") {
			t.Errorf("%s: file %s is not the fileset's", name, p)
		}
	}
	want := map[string]Reason{
		"no-checkpoint":       NoCheckpoint,
		"checkpoint-mismatch": CheckpointMismatch,
		"digest-mismatch":     DigestMismatch,
		"missing-file":        MissingFile,
	}
	if e.Expect == "ok" {
		if !f.OK() {
			t.Errorf("%s: complete fileset left out: %v", name, f.Problem)
			return
		}
		n := map[Kind]int{Data: 7, Snapshot: 7, Index: 8, SnapshotMetadata: 2}[e.Kind]
		if len(f.Files) != n {
			t.Errorf("%s: %d files, want %d: %v", name, len(f.Files), n, f.Files)
		}
		return
	}
	reason, known := want[e.Expect]
	if !known {
		t.Fatalf("%s: unknown expectation %q in filesetgen's manifest", name, e.Expect)
	}
	if f.OK() {
		t.Errorf("%s: damaged fileset (%s) reported OK", name, e.Damage)
		return
	}
	if f.Problem.Reason != reason {
		t.Errorf("%s: got %v, want %s", name, f.Problem, reason)
	}
	wantFile := e.Dir + "/" + e.Prefix + "-checkpoint.db"
	if e.File != "" {
		wantFile = e.Dir + "/" + e.Prefix + "-" + e.File + ".db"
	}
	if f.Problem.File != wantFile {
		t.Errorf("%s: problem names %s, want %s (%v)", name, f.Problem.File, wantFile, f.Problem)
	}
}

// TestSeriesIDs reads the series ids of data and snapshot filesets written
// by M3's own writer: exactly filesetgen's series, in order, and no more
// than asked.
func TestSeriesIDs(t *testing.T) {
	bin := m3dbtest.FilesetGen(t)
	root := t.TempDir()
	cmd := exec.Command(bin, "-dir", root, "-ns", "metrics", "-shard", "3",
		"-block", "1700006400000000000", "-blocksize", "2h", "-series", "25", "-points", "5", "-snapshot")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("filesetgen: %v\n%s", err, out)
	}
	rep, err := ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range rep.Filesets {
		if f.Kind != Data && f.Kind != Snapshot {
			continue
		}
		seen++
		ids, err := SeriesIDs(os.DirFS(root), f, 100)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(ids) != 25 || ids[0] != "filesetgen.series-0000" || ids[24] != "filesetgen.series-0024" {
			t.Fatalf("%s: ids %q", f, ids)
		}
		if few, err := SeriesIDs(os.DirFS(root), f, 3); err != nil || len(few) != 3 {
			t.Errorf("%s: at most 3: %q %v", f, few, err)
		}
	}
	if seen != 2 {
		t.Fatalf("%d data and snapshot filesets", seen)
	}
}

// TestScanMsgpackRefusesGarbage: truncated or unknown input is an error,
// never a panic.
func TestScanMsgpackRefusesGarbage(t *testing.T) {
	for _, b := range [][]byte{{0xc4}, {0xc4, 5, 'a'}, {0xc1}, {0xdb, 0xff, 0xff, 0xff, 0xff}, {0xcf, 1}} {
		if err := scanMsgpack(b, func(byte, []byte) bool { return true }); err == nil {
			t.Errorf("% x: no error", b)
		}
	}
}

// mapVerified is a Verified that counts its hits.
type mapVerified struct {
	keys map[string]bool
	hits int
}

func (m *mapVerified) Has(k string) bool {
	if m.keys[k] {
		m.hits++
	}
	return m.keys[k]
}
func (m *mapVerified) Add(k string) { m.keys[k] = true }

// TestScanVerified: a second scan reads no fileset verified before with
// the same files and reports the same; a file changed since (new bytes,
// new mtime) is verified again and found damaged; damaged filesets are
// never remembered.
func TestScanVerified(t *testing.T) {
	bin := m3dbtest.FilesetGen(t)
	root := t.TempDir()
	cmd := exec.Command(bin, "-dir", root, "-ns", "metrics", "-shard", "3", "-block", "1700006400000000000",
		"-blocksize", "2h", "-series", "20", "-points", "10", "-snapshot", "-index", "-damage", "all")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("filesetgen: %v\n%s", err, out)
	}
	v := &mapVerified{keys: map[string]bool{}}
	first, err := ScanVerified(os.DirFS(root), v)
	if err != nil {
		t.Fatal(err)
	}
	ok, bad := 0, 0
	var data Fileset
	for _, f := range first.Filesets {
		switch {
		case f.Kind == Data && f.OK():
			ok++
			data = f
		case f.Kind == Snapshot && f.OK(), f.Kind == Index && f.OK():
			ok++
		case !f.OK():
			bad++
		}
	}
	if ok < 3 || bad == 0 || len(v.keys) != ok || v.hits != 0 {
		t.Fatalf("first scan: %d intact, %d damaged, %d remembered, %d hits", ok, bad, len(v.keys), v.hits)
	}
	second, err := ScanVerified(os.DirFS(root), v)
	if err != nil {
		t.Fatal(err)
	}
	if v.hits != ok || len(second.Filesets) != len(first.Filesets) || len(second.Skipped()) != bad {
		t.Fatalf("second scan: %d hits of %d, %d filesets (%d before), %d skipped (%d before)",
			v.hits, ok, len(second.Filesets), len(first.Filesets), len(second.Skipped()), bad)
	}
	// A data file rewritten since: verified again, found damaged.
	var dataFile string
	for _, f := range data.Files {
		if strings.HasSuffix(f, "-data.db") {
			dataFile = path.Join(root, f)
		}
	}
	b, err := os.ReadFile(dataFile)
	if err != nil || len(b) == 0 {
		t.Fatalf("%s: %v", dataFile, err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(dataFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(dataFile, later, later); err != nil {
		t.Fatal(err)
	}
	third, err := ScanVerified(os.DirFS(root), v)
	if err != nil {
		t.Fatal(err)
	}
	if len(third.Skipped()) != bad+1 {
		t.Fatalf("a rewritten data file: %d skipped, want %d", len(third.Skipped()), bad+1)
	}
}
