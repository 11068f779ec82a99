package integration

// An agent backs up to SeaweedFS through test/faultproxy while weed is
// killed and restarted mid-upload: the backup either succeeds and restores
// byte for byte, or fails with an error naming the unavailable store; and
// a backup run after the restart succeeds, restores byte for byte and
// verifies clean.

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
	"github.com/crayfish-backup/crayfish/test/faultproxy"
)

func TestWireFaultAgentSeaweedRestart(t *testing.T) {
	srv := emulators.StartSeaweedFS(t) // fails the test if weed is missing
	p, err := faultproxy.New(strings.TrimPrefix(srv.Endpoint, "http://"), faultproxy.HTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u, _ := url.Parse(srv.URL)
	q := u.Query()
	q.Set("endpoint", "http://"+p.Addr())
	u.RawQuery = q.Encode()
	repo := u.String() // the agent's default bounds and retries

	keyFile := filepath.Join(t.TempDir(), "repo.key")
	if res := cloudCLI(t, srv, "init", "--repository", repo, "--key-file", keyFile); res.code != 0 {
		t.Fatalf("crayfish init --repository %s: exit %d\n%s%s", repo, res.code, res.stdout, res.stderr)
	}
	srv.Setenv(t)
	a := newAgent(t, agentOpts{repo: repo, keyFile: keyFile})
	makeTree(t, a.root, 200, 40<<20)
	want := describeTree(t, a.root)

	// 8 MiB/s up: the 40 MiB take seconds, and weed dies after 6 MiB.
	p.SetBandwidth(faultproxy.Up, 8<<20)
	from := p.Stats().BytesUp
	var wg sync.WaitGroup
	var restartErr error
	var down, back time.Time
	wg.Go(func() {
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if p.Stats().BytesUp-from >= 6<<20 {
				down = time.Now()
				if restartErr = srv.Kill(); restartErr == nil {
					time.Sleep(time.Second)
					restartErr = srv.Restart()
				}
				back = time.Now()
				return
			}
		}
	})
	begin := time.Now()
	res := a.cli("backup", "--wait", "--output", "json")
	took := time.Since(begin)
	wg.Wait()
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	if down.IsZero() {
		t.Fatal("the backup ended before weed was killed")
	}
	t.Logf("MEASURE backup across a weed kill and restart (down %v): exit %d after %v, %d requests, %d connections",
		back.Sub(down).Round(time.Millisecond), res.code, took.Round(time.Millisecond), p.Stats().Requests, p.Stats().Connections)
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		t.Fatalf("backup --output json (exit %d): %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if res.code == 0 {
		restoreAndCompare(t, a, op.BackupID, want)
	} else {
		t.Logf("the backup failed: %s", op.Error)
		if op.State != fsm.OpFailed || !strings.Contains(op.Error, backend.ErrUnavailable.Error()) {
			t.Fatalf("backup across a restart: state %s, error %q: want success or an error naming the unavailable store\nagent log:\n%s",
				op.State, op.Error, tail(a.logs(), 3000))
		}
	}

	// After the restart (writes come back some seconds later): a backup
	// succeeds and restores; the repository verifies clean.
	p.Heal()
	var again *fsm.Operation
	for try := 1; ; try++ {
		begin := time.Now()
		res := a.cli("backup", "--wait", "--output", "json")
		var op fsm.Operation
		if res.code == 0 && json.Unmarshal([]byte(res.stdout), &op) == nil {
			again = &op
			t.Logf("MEASURE backup after the restart: succeeded at try %d in %v, %v after weed was back", try,
				time.Since(begin).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
			break
		}
		if try == 5 {
			t.Fatalf("backup after the restart failed 5 times: %s %s\nagent log:\n%s", res.stdout, res.stderr, tail(a.logs(), 3000))
		}
		time.Sleep(5 * time.Second)
	}
	restoreAndCompare(t, a, again.BackupID, want)
	res = a.cli("verify", "--read-data", "--wait", "--output", "json")
	var vop fsm.Operation
	if res.code != 0 || json.Unmarshal([]byte(res.stdout), &vop) != nil {
		t.Fatalf("verify --read-data: exit %d %s %s", res.code, res.stdout, res.stderr)
	}
	var vrep storage.VerifyReport
	stepResult(t, &vop, "verify", &vrep)
	if len(vrep.Problems) != 0 || vrep.PacksRead != vrep.Packs {
		t.Fatalf("verify --read-data after the restart: %+v", vrep)
	}
}

// restoreAndCompare restores backupID into a new directory and compares
// it with want, byte for byte.
func restoreAndCompare(t *testing.T, a *agent, backupID string, want map[string]entryDesc) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restored")
	if res := a.cli("restore", backupID, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore %s: exit %d %s\n%s", backupID, res.code, res.stderr, tail(a.logs(), 3000))
	}
	compareTrees(t, want, describeTree(t, target))
}
