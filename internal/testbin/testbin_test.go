package testbin

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBuildArgs(t *testing.T) {
	plain := buildArgs("/b/crayfish", "", false)
	if want := []string{"build", "-o", "/b/crayfish", Main}; !slices.Equal(plain, want) {
		t.Errorf("plain: %q, want %q", plain, want)
	}
	cover := buildArgs("/b/crayfish", "chaosfaults", true)
	for _, a := range []string{"-tags", "chaosfaults", "-cover", "-covermode=atomic", "-coverpkg=" + CoverPkg} {
		if !slices.Contains(cover, a) {
			t.Errorf("cover build %q lacks %q", cover, a)
		}
	}
	if cover[len(cover)-1] != Main {
		t.Errorf("cover build %q does not end with the package", cover)
	}
}

// TestBuildCoverage builds the real binary with CRAYFISH_COVERDIR set and
// shows that its processes leave counters in that directory through the
// GOCOVERDIR Build set: a client that ends through os.Exit with an error,
// and an agent stopped with SIGTERM, the way the harnesses stop agents.
func TestBuildCoverage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds crayfish")
	}
	cov := t.TempDir()
	t.Setenv(EnvCoverDir, cov)
	t.Setenv("GOCOVERDIR", "") // restored after the test, as Build sets it
	bin, err := Build(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("GOCOVERDIR"); got != cov {
		t.Fatalf("GOCOVERDIR = %q, want %q", got, cov)
	}
	counters := func() int {
		m, _ := filepath.Glob(filepath.Join(cov, "covcounters.*"))
		return len(m)
	}

	// No agent listens there: the client fails, exit status 1.
	out, _ := exec.Command(bin, "status", "--url", "http://"+freeAddr(t)).CombinedOutput()
	if strings.Contains(string(out), "GOCOVERDIR") {
		t.Errorf("coverage warning in the output: %s", out)
	}
	if meta, _ := filepath.Glob(filepath.Join(cov, "covmeta.*")); len(meta) != 1 || counters() != 1 {
		t.Fatalf("after a client run: meta files %v, %d counter files", meta, counters())
	}

	dir, root := t.TempDir(), t.TempDir()
	httpAddr := freeAddr(t)
	agent := exec.Command(bin, "agent", "--node-id", "n1", "--data-dir", filepath.Join(dir, "data"), "--root", root,
		"--http-addr", httpAddr, "--raft-addr", freeAddr(t), "--gossip-addr", freeAddr(t))
	log, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	agent.Stdout, agent.Stderr = log, log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	logs := func() string { b, _ := os.ReadFile(log.Name()); return string(b) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + httpAddr + "/v1/cluster"); err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited during start-up: %v\n%s", err, logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			agent.Process.Kill()
			<-exited
			t.Fatalf("agent did not answer in 30s:\n%s", logs())
		}
	}
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("agent after SIGTERM: %v\n%s", err, logs())
	}
	if n := counters(); n != 2 {
		t.Fatalf("after the agent's graceful stop: %d counter files, want 2", n)
	}
}

// freeAddr is a loopback port free for TCP and UDP (gossip takes both).
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free TCP+UDP port")
	return ""
}
