package integration

// The real binary on s3://, gs:// and azblob://: crayfish init, an agent
// process backing up and restoring a tree, and verify --read-data, against
// the emulators of package emulators (gofakes3 and fake-gcs-server in this
// test process, reached by the agent over loopback HTTP; Azurite as a child
// process).

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
)

func TestCloudAgentS3(t *testing.T)    { testCloudAgent(t, emulators.StartS3(t)) }
func TestCloudAgentGCS(t *testing.T)   { testCloudAgent(t, emulators.StartGCS(t)) }
func TestCloudAgentAzure(t *testing.T) { testCloudAgent(t, emulators.StartAzurite(t)) }

// TestCloudAgentSeaweedFS: the same on a real S3 server (SeaweedFS).
func TestCloudAgentSeaweedFS(t *testing.T) { testCloudAgent(t, emulators.StartSeaweedFS(t)) }

// cloudCLI runs the crayfish binary as a child process whose environment is
// this process's plus srv.Env (explicitly, whatever this process has set).
func cloudCLI(t *testing.T, srv *emulators.Server, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = srv.Environ()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("crayfish %v: %v", args, err)
	}
	return res
}

func testCloudAgent(t *testing.T, srv *emulators.Server) {
	begin := time.Now()
	scheme := srv.URL[:strings.IndexByte(srv.URL, ':')]
	phase := func(what string) {
		t.Logf("MEASURE %s: %s at %v", scheme, what, time.Since(begin).Round(time.Millisecond))
	}
	// init, before this process has any of the emulator's environment:
	// Server.Env alone must be enough for a child.
	keyFile := filepath.Join(t.TempDir(), "repo.key")
	if res := cloudCLI(t, srv, "init", "--repository", srv.URL, "--key-file", keyFile); res.code != 0 {
		t.Fatalf("crayfish init --repository %s: exit %d\n%s%s", srv.URL, res.code, res.stdout, res.stderr)
	}
	phase("init")

	// The agent (exec.Cmd without Env) inherits this process's environment
	// as it is when it starts; so do the CLI runs of the harness. This also
	// comes before this process's own first Open (Azure: read once).
	srv.Setenv(t)
	a := newAgent(t, agentOpts{repo: srv.URL, keyFile: keyFile})
	phase("agent leads")
	makeTree(t, a.root, 300, 9<<20) // the 9 MiB file is 3 chunks
	want := describeTree(t, a.root)

	op := a.backupWait()
	var up uploadResult
	stepResult(t, op, "upload", &up)
	if up.Uploaded == 0 || up.UploadedBytes < 9<<20 {
		t.Fatalf("backup uploaded too little: %+v", up)
	}
	phase("backup")

	// The repository is in the emulator's bucket: look from this process.
	ctx := context.Background()
	secret, err := node.LoadSecret("", keyFile, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := storage.Open(ctx, srv.URL, storage.OpenOptions{Secret: secret})
	if err != nil {
		t.Fatalf("open the agent's repository from the test: %v", err)
	}
	defer r.Close()
	m, err := r.GetManifestWithFiles(ctx, op.BackupID)
	if err != nil {
		t.Fatal(err)
	}
	var files, chunks int
	for _, n := range m.Nodes {
		for _, f := range n.Files {
			if f.Type == storage.TypeFile {
				files++
				chunks += len(f.Chunks)
				if f.Path == "big/fifty.bin" && len(f.Chunks) != 3 {
					t.Fatalf("%s: %d chunks, want 3", f.Path, len(f.Chunks))
				}
			}
		}
	}
	if files != countKind(want, "file") {
		t.Fatalf("snapshot lists %d files, the tree has %d", files, countKind(want, "file"))
	}
	be, err := backend.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	counts := map[string]int{}
	for _, prefix := range []string{"data/", "meta/", "index/", "snapshots/", "keys/"} {
		if err := be.List(ctx, prefix, func(backend.ObjectInfo) error { counts[prefix]++; return nil }); err != nil {
			t.Fatalf("List(%s): %v", prefix, err)
		}
		if counts[prefix] == 0 {
			t.Fatalf("no %s objects in %s after a backup", prefix, srv.URL)
		}
	}
	t.Logf("%s holds %v; %d files in %d chunks", srv.URL, counts, files, chunks)

	target := filepath.Join(t.TempDir(), "restored")
	res := a.cli("restore", op.BackupID, "--target", target, "--wait", "--output", "json")
	if res.code != 0 {
		t.Fatalf("restore: exit %d %s\n%s", res.code, res.stderr, tail(a.logs(), 3000))
	}
	var rop fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &rop); err != nil {
		t.Fatalf("restore --output json: %v\n%s", err, res.stdout)
	}
	var rr restoreResult
	stepResult(t, &rop, "restore", &rr)
	if rr.Downloaded == 0 || rr.Kept != 0 {
		t.Fatalf("restore into an empty target must download everything: %+v", rr)
	}
	compareTrees(t, want, describeTree(t, target))
	phase("restore")

	res = a.cli("verify", "--read-data", "--wait", "--output", "json")
	if res.code != 0 {
		t.Fatalf("verify --read-data through the agent: exit %d %s\n%s", res.code, res.stderr, tail(a.logs(), 3000))
	}
	var vop fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &vop); err != nil {
		t.Fatalf("verify --output json: %v\n%s", err, res.stdout)
	}
	var vrep storage.VerifyReport
	stepResult(t, &vop, "verify", &vrep)
	if vrep.Snapshots != 1 || vrep.Packs == 0 || vrep.PacksRead != vrep.Packs || vrep.BytesRead < 9<<20 || len(vrep.Problems) != 0 {
		t.Fatalf("verify --read-data read too little: %+v", vrep)
	}
	phase("verify through the agent")
	// And the offline verify, a child process of its own.
	if res := cloudCLI(t, srv, "verify", "--repository", srv.URL, "--key-file", keyFile, "--read-data"); res.code != 0 {
		t.Fatalf("offline verify --read-data: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	phase("offline verify")
}
