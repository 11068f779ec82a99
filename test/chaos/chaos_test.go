package chaos

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
)

var (
	duration = flag.Duration("chaos.duration", 90*time.Second, "how long clients and the nemesis run")
	seed     = flag.Uint64("chaos.seed", 0, "schedule seed (0: derived from the time, printed)")
	nodes    = flag.Int("chaos.nodes", 3, "agents in the cluster")
	report   = flag.String("chaos.report", "", "report directory (default: a temp dir, kept on failure)")
	store    = flag.String("chaos.store", StoreSeaweedFS, "the repository's store: seaweedfs (a real S3 server behind a fault proxy), gofakes3 (an S3 emulator in the test process) or file; the S3 stores add their faults")
	faults   = flag.String("chaos.faults", "", "comma-separated fault kinds to inject (default: all, with the store's faults)")
)

// envInNamespace marks the child process that runs inside the private
// network namespace.
const envInNamespace = "CRAYFISH_CHAOS_NETNS"

// inNamespace re-runs the named test alone inside `unshare -Urn` (a user
// and network namespace of its own: partitions never touch the host) and
// reports whether this process is that child.
func inNamespace(t *testing.T, name string) bool {
	if os.Getenv(envInNamespace) == "1" {
		if err := SetupNamespaceRouting(); err != nil {
			t.Fatal(err)
		}
		return true
	}
	args := []string{"-Urn", os.Args[0], "-test.run", "^" + name + "$", "-test.v", "-test.timeout", (*duration + 45*time.Minute).String()}
	for _, f := range []string{"chaos.duration", "chaos.seed", "chaos.nodes", "chaos.report", "chaos.store", "chaos.faults"} {
		args = append(args, "-"+f+"="+flag.Lookup(f).Value.String())
	}
	cmd := exec.Command("unshare", args...)
	// Private network: its SeaweedFS needs no machine-wide lock.
	cmd.Env = append(os.Environ(), envInNamespace+"=1", emulators.EnvPrivateNetwork+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("namespace run:\n%s", out.String())
	if err != nil || !strings.Contains(out.String(), "--- PASS: "+name) {
		t.Fatalf("%s in a network namespace failed: %v", name, err)
	}
	return false
}

func runDir(t *testing.T) string {
	if *report != "" {
		return *report
	}
	dir, err := os.MkdirTemp("", "crayfish-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestChaos is the chaos run: clients and the nemesis for -chaos.duration,
// then every checker. The report directory is printed (kept on failure or
// with -chaos.report).
func TestChaos(t *testing.T) {
	if !inNamespace(t, "TestChaos") {
		return
	}
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	dir := runDir(t)
	// chaosfaults: the agents' wall clocks take the nemesis's offsets.
	bin, err := BuildBinary(t.TempDir(), "chaosfaults")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	if *faults != "" {
		kinds = strings.Split(*faults, ",")
		for _, k := range kinds {
			if !slices.Contains(AllFaults, k) && !slices.Contains(SeaweedFaults, k) {
				t.Fatalf("-chaos.faults: unknown kind %q (known: %v %v)", k, AllFaults, SeaweedFaults)
			}
		}
	}
	st := openStore(t, dir)
	defer st.Close()
	t.Logf("store: %s", st)
	rep, err := Run(context.Background(), Config{Nodes: *nodes, Duration: *duration, Seed: s, Dir: dir, Bin: bin, Store: st, Faults: kinds, Log: t.Logf})
	if err != nil {
		t.Fatalf("chaos run (seed %d, report %s): %v", s, dir, err)
	}
	t.Logf("report %s\n%s", dir, rep.Summary())
	if !rep.Pass {
		t.Fatalf("violations found (seed %d); report in %s", s, dir)
	}
	if *report == "" {
		os.RemoveAll(filepath.Join(dir, "nodes"))
	}
}

// openStore starts the store -chaos.store names.
func openStore(t *testing.T, dir string) *Store {
	switch *store {
	case StoreSeaweedFS:
		st, err := NewSeaweedStore(t)
		if err != nil {
			t.Fatal(err)
		}
		return st
	case StoreGofakes3:
		st, err := NewS3Store()
		if err != nil {
			t.Fatal(err)
		}
		return st
	case StoreFile:
		return NewFileStore(dir)
	}
	t.Fatalf("-chaos.store: unknown store %q (seaweedfs, gofakes3 or file)", *store)
	return nil
}
