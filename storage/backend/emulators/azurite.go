package emulators

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Azurite's well-known development account (published in Microsoft's
// Azurite documentation; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azuriteEnv is the environment of every Azurite Server. It never changes:
// gocloud's azureblob reads it once per process (see the package doc).
var azuriteEnv = []string{
	"AZURE_STORAGE_ACCOUNT=" + AzuriteAccount,
	"AZURE_STORAGE_KEY=" + AzuriteKey,
	// Everything else that would change how azureblob builds the service
	// URL or picks credentials: empty (the domain and protocol come from
	// the URL).
	"AZURE_STORAGE_SAS_TOKEN=",
	"AZURE_STORAGE_CONNECTION_STRING=",
	"AZURE_STORAGEBLOB_CONNECTIONSTRING=",
	"AZURE_STORAGE_DOMAIN=",
	"AZURE_STORAGE_PROTOCOL=",
	"AZURE_STORAGE_IS_LOCAL_EMULATOR=",
	"AZURE_STORAGE_IS_CDN=",
}

// The azurite-blob process shared by the test binary.
var azurite struct {
	mu   sync.Mutex
	proc *azuriteProcess
	err  error // a failed start, reported to every later caller
}

type azuriteProcess struct {
	addr   string // 127.0.0.1:port
	pid    int
	log    *Log
	exited chan error // receives Wait's result once
}

// StartAzurite returns a new container on the Azurite (azurite-blob, npm
// package "azurite", version pinned by scripts/azurite.sh) shared by the
// whole test binary, starting it on a free loopback port first if needed.
// Clients reach it through gocloud's azureblob (azure-sdk-for-go azblob)
// with path-style URLs over plain HTTP (protocol=http&domain=127.0.0.1:PORT).
//
// scripts/azurite.sh, found in the module root (the nearest directory above
// the working directory that holds go.mod), installs Azurite into a cache
// directory on first use; without Node.js and npm the test fails. Azurite
// keeps its data in memory. It runs until the test binary exits (on Linux
// the kernel kills it then, however the binary ends) or StopAzurite.
func StartAzurite(t testing.TB) *Server {
	t.Helper()
	p, err := sharedAzurite(t)
	if err != nil {
		t.Fatal(err)
	}
	bucket := bucketName()
	// gocloud cannot create containers; the SDK can.
	cred, err := container.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(
		fmt.Sprintf("http://%s/%s/%s", p.addr, AzuriteAccount, bucket), cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cc.Create(ctx, nil); err != nil {
		t.Fatalf("create container %s on Azurite %s: %v\nazurite-blob output:\n%s", bucket, p.addr, err, p.log.String())
	}
	q := url.Values{}
	q.Set("protocol", "http")
	q.Set("domain", p.addr) // "127.0.0.1:port": path-style account URL
	return &Server{
		URL:      "azblob://" + bucket + "?" + q.Encode(),
		Env:      append([]string(nil), azuriteEnv...),
		Endpoint: "http://" + p.addr,
		Bucket:   bucket,
		Log:      p.log,
	}
}

// StopAzurite stops the shared Azurite, if it runs; a later StartAzurite
// starts a new one. Containers on it are lost.
func StopAzurite() {
	azurite.mu.Lock()
	defer azurite.mu.Unlock()
	if p := azurite.proc; p != nil {
		azurite.proc = nil
		p.stop()
	}
}

func sharedAzurite(t testing.TB) (*azuriteProcess, error) {
	azurite.mu.Lock()
	defer azurite.mu.Unlock()
	if azurite.err != nil {
		return nil, azurite.err
	}
	if p := azurite.proc; p != nil {
		select {
		case err := <-p.exited:
			p.exited <- err
			return nil, fmt.Errorf("the shared azurite-blob on %s exited (%v):\n%s", p.addr, err, p.log.String())
		default:
			return p, nil
		}
	}
	bin, err := azuriteBinary(t)
	if err == nil {
		azurite.proc, err = launchAzurite(bin)
	}
	azurite.err = err
	return azurite.proc, err
}

// azuriteBinary runs scripts/azurite.sh, which installs Azurite into a
// cache directory if needed and prints the azurite-blob path.
func azuriteBinary(t testing.TB) (string, error) {
	bin, err := installedBinary(t, "azurite.sh", nil, "npm install of Azurite")
	if err != nil {
		return "", fmt.Errorf("%w; the Azure tests need Node.js 20 and npm to install and run Azurite", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("node not found in PATH (needed to run %s): %w", bin, err)
	}
	return bin, nil
}

// moduleRoot is the nearest directory at or above the working directory
// (a test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod in %s or any directory above it", wd)
		}
		dir = parent
	}
}

// launchAzurite starts azurite-blob on a free loopback port and waits until
// it listens. Picking a port and binding it race with other processes, so a
// start that dies early is tried again on another port.
func launchAzurite(bin string) (*azuriteProcess, error) {
	var err error
	for range 3 {
		var p *azuriteProcess
		if p, err = launchAzuriteOnce(bin); err == nil {
			return p, nil
		}
		if !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, err
}

var errExitedEarly = errors.New("azurite-blob exited before listening")

func launchAzuriteOnce(bin string) (*azuriteProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logs := new(Log)
	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		// Nothing on disk: the process is shared by every test of the
		// binary and no test's temporary directory outlives its test.
		"--inMemoryPersistence",
		"--skipApiVersionCheck",
		"--loose",
		"--disableTelemetry",
		"--silent",
	)
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	exited, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &azuriteProcess{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), pid: cmd.Process.Pid, log: logs, exited: exited}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%w on %s (%v):\n%s", errExitedEarly, p.addr, err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("azurite-blob not listening on %s after 60s:\n%s", p.addr, logs.String())
		}
	}
}

// startProcess starts cmd from a goroutine locked to its OS thread for as
// long as the child runs: the parent-death signal fires when the thread that
// forked the child exits, and a locked thread exits only with the process.
// The returned channel receives Wait's result.
func startProcess(cmd *exec.Cmd) (chan error, error) {
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// stop ends the process group this package started (SIGTERM, then SIGKILL).
func (p *azuriteProcess) stop() {
	stopGroup(p.pid, p.exited)
}

// stopGroup ends the process group of pid (SIGTERM, then SIGKILL after
// 10 s) and waits for its exit on exited (started by startProcess), which
// it fills again for later readers.
func stopGroup(pid int, exited chan error) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		err := <-exited
		exited <- err
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
