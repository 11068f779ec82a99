package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// scenario is a small cluster of an agent binary built with the chaosbugs
// tag, with one bug switched on (or none, as the control).
type scenario struct {
	t       *testing.T
	c       *Cluster
	h       *History
	acked   *Acked
	writers map[string]*Writer
	cl      *Client
	scratch string
}

func newScenario(t *testing.T, bin, bug string, extra ...string) *scenario {
	t.Helper()
	dir := t.TempDir()
	var env []string
	if bug != "" {
		env = []string{"CRAYFISH_INJECT_BUG=" + bug}
	}
	c, err := NewCluster(bin, dir, 3, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Extra = extra
	t.Cleanup(c.StopAll)
	for _, a := range c.Agents {
		if err := c.Start(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitFormed(context.Background(), c, time.Minute); err != nil {
		t.Fatal(err)
	}
	h, err := NewHistory(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := &scenario{t: t, c: c, h: h, acked: &Acked{backups: map[string]AckedBackup{}}, writers: map[string]*Writer{}, scratch: filepath.Join(dir, "scratch")}
	for i, a := range c.Agents {
		w := NewWriter(a.Tree, a.Root, filepath.Join(dir, "staging", a.Tree), uint64(i), h.Now)
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		s.writers[a.Tree] = w
	}
	s.cl = newClient(0, c, h, 1, s.acked, s.writers, s.scratch)
	return s
}

// backup runs one backup through the client and returns it if acked.
func (s *scenario) backup() (AckedBackup, bool) {
	before := len(s.acked.All())
	s.cl.backup(context.Background())
	all := s.acked.All()
	if len(all) == before {
		return AckedBackup{}, false
	}
	var newest AckedBackup
	for _, b := range all {
		if b.Acked > newest.Acked {
			newest = b
		}
	}
	return newest, true
}

// TestCheckersCatchInjectedBugs switches on, one at a time, a known bug
// in an agent built with the chaosbugs tag, and shows that the matching
// checker fails — and passes in the same scenario without the bug.
func TestCheckersCatchInjectedBugs(t *testing.T) {
	if !inNamespace(t, "TestCheckersCatchInjectedBugs") {
		return
	}
	bin, err := BuildBinary(t.TempDir(), "chaosbugs,chaosfaults")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		bug, checker string
		extra        []string
		run          func(t *testing.T, s *scenario) Verdict
	}{
		{"ack-before-manifest", CheckNoLost, nil, func(t *testing.T, s *scenario) Verdict {
			if _, ok := s.backup(); !ok {
				t.Fatal("the backup was not acknowledged")
			}
			v, _ := checkNoLost(ctx, s.c, s.acked.All(), map[string]bool{})
			return v
		}},
		{"drop-step-done", CheckLiveness, nil, func(t *testing.T, s *scenario) Verdict {
			if code, err := s.cl.post(ctx, s.c.Agents[0], "/v1/backups", map[string]any{"id": "stuck"}, nil); err != nil || code != http.StatusAccepted {
				t.Fatalf("start: %d %v", code, err)
			}
			return checkLiveness(ctx, s.c, 5*time.Second)
		}},
		{"skip-epoch-check", CheckFencing, nil, func(t *testing.T, s *scenario) Verdict {
			if _, ok := s.backup(); !ok {
				t.Fatal("the backup was not acknowledged")
			}
			// A deposed coordinator's late call, epoch 1, reaches every node.
			for _, a := range s.c.Agents {
				req := map[string]any{"ref": map[string]any{"op_id": "zombie", "epoch": 1, "step": 0}, "name": "release"}
				s.cl.post(ctx, a, "/internal/v1/jobs", req, nil)
			}
			return checkFencing(ctx, s.c)
		}},
		{"gc-ignores-locks", CheckGCSafety, []string{"--upload-bytes-per-second", "65536", "--read-once=false"}, func(t *testing.T, s *scenario) Verdict {
			b1, ok := s.backup()
			if !ok {
				t.Fatal("b1 not acknowledged")
			}
			if _, done := s.cl.runOp(ctx, "delete", "/v1/deletions", map[string]any{"backup_ids": []string{b1.BackupID}}, b1.BackupID); done.Type != OK {
				t.Fatalf("delete b1: %+v", done)
			}
			// b2 holds b1's data (deduplicated against the now unreferenced
			// blobs) plus new generations that upload slowly; an offline
			// GC runs meanwhile. The upload step must do the uploading
			// (read_once off): with read once the snapshot saves, and the
			// upload step's index sync then sees what a GC during the
			// snapshot removed and saves it again, leaving the bug no
			// window to show in.
			for _, w := range s.writers {
				for range 3 {
					w.Step()
				}
			}
			gcOut := make(chan string, 1)
			go func() {
				for deadline := time.Now().Add(time.Minute); !running(ctx, s.c, "upload") && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
				}
				gc := exec.Command(s.c.Bin, "gc", "--repository", s.c.Repo, "--key-file", s.c.KeyFile)
				gc.Env = append(os.Environ(), s.c.env...) // the same bug, if any, as the agents
				out, err := gc.CombinedOutput()
				gcOut <- fmt.Sprintf("%v: %s", err, out)
			}()
			b2, ok := s.backup()
			t.Logf("offline gc during b2: %s", <-gcOut)
			if !ok {
				t.Fatal("b2 not acknowledged")
			}
			return checkGCSafety(ctx, s.c, s.scratch, []AckedBackup{b2}, s.writers)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			for _, bug := range []string{tc.bug, ""} {
				s := newScenario(t, bin, bug, tc.extra...)
				v := tc.run(t, s)
				t.Logf("bug %q: %s pass=%v: %s %v", bug, v.Checker, v.Pass, v.Summary, v.Evidence)
				if v.Checker != tc.checker {
					t.Fatalf("ran %s, want %s", v.Checker, tc.checker)
				}
				if bug != "" && v.Pass {
					t.Errorf("%s did not catch %s", tc.checker, bug)
				}
				if bug == "" && !v.Pass {
					t.Errorf("%s failed without the bug: %v", tc.checker, v.Evidence)
				}
				s.c.StopAll()
				os.RemoveAll(filepath.Join(s.c.Dir, "nodes"))
			}
		})
	}
}

// running reports whether the cluster's active operation has a running
// step called name.
func running(ctx context.Context, c *Cluster, name string) bool {
	var list struct {
		Operations []opView `json:"operations"`
	}
	for _, a := range c.Agents {
		if getJSON(ctx, quick, a.URL()+"/v1/operations?limit=5", &list) == nil {
			for _, op := range list.Operations {
				for _, st := range op.Steps {
					if st.Name == name && st.State == "running" {
						return true
					}
				}
			}
			return false
		}
	}
	return false
}
