package backend

// Conformance over the real wire protocols, against emulators on loopback:
// gofakes3 and fake-gcs-server in-process, Azurite as a child process.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const testBucket = "crayfish-test"

// TestS3 runs the suite through gocloud's s3blob (aws-sdk-go-v2) against
// gofakes3 v1.2.0 (s3mem backend) served over HTTP on 127.0.0.1.
func TestS3(t *testing.T) {
	mem := s3mem.New()
	if err := mem.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(mem, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)

	t.Setenv("AWS_ACCESS_KEY_ID", "crayfish")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "crayfish-secret")
	// Nothing from the developer's AWS setup, and no instance-metadata
	// lookups off loopback.
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	q := url.Values{}
	q.Set("endpoint", srv.URL)
	q.Set("use_path_style", "true")
	q.Set("region", "us-east-1")
	q.Set("disable_https", "true")
	testBackend(t, openT(t, "s3://"+testBucket+"?"+q.Encode()))
}

// TestGCS runs the suite through gocloud's gcsblob (cloud.google.com/go/storage,
// JSON API) against fake-gcs-server v1.56.1's fakestorage in-process, over
// HTTP on 127.0.0.1; STORAGE_EMULATOR_HOST points the client at it.
func TestGCS(t *testing.T) {
	var requests lockedBuffer // access log, one line per request
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		NoListener: false,
		Writer:     &requests,
		// The Go client reads objects through the XML API at
		// http://HOST/BUCKET/OBJECT, which fake-gcs-server serves only for
		// requests addressed to its public host (compared without port).
		PublicHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: testBucket})
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" {
		t.Fatalf("fake-gcs-server listens on %s, want 127.0.0.1", u.Host)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", u.Host)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("NO_GCE_CHECK", "true")
	b := openT(t, "gs://"+testBucket)
	testBackend(t, b)

	t.Run("UploadRequests", func(t *testing.T) {
		// Objects up to 16.25 MiB (a full pack) go in one request; larger
		// ones use resumable chunks.
		ctx := context.Background()
		for _, c := range []struct {
			size      int
			resumable bool
		}{{0, false}, {1000, false}, {gcsSingleRequestMax - 1, false}, {gcsSingleRequestMax, false}, {20 << 20, true}} {
			requests.Reset()
			key := fmt.Sprintf("uploads/%d", c.size)
			data := randBytes(int64(c.size), c.size)
			mustPut(t, ctx, b, key, data)
			var uploads, resumable int
			for line := range strings.Lines(requests.String()) {
				if strings.Contains(line, "/upload/storage/v1/") {
					uploads++
					if strings.Contains(line, "uploadType=resumable") {
						resumable++
					}
				}
			}
			if c.resumable {
				if resumable == 0 {
					t.Errorf("%d bytes: no resumable upload:\n%s", c.size, requests.String())
				}
			} else if uploads != 1 || resumable != 0 {
				t.Errorf("%d bytes: %d upload requests (%d resumable), want 1 single-request upload:\n%s",
					c.size, uploads, resumable, requests.String())
			}
			mustGet(t, ctx, b, key, data)
		}
	})
}

// Azurite's well-known development account (published in Microsoft's
// Azurite documentation; not a secret).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// TestAzure runs the suite through gocloud's azureblob (azure-sdk-for-go
// azblob) against Azurite 3.37.0 (npm) started as a child process on
// 127.0.0.1. scripts/azurite.sh installs it on first use; without Node.js
// and npm this test fails.
func TestAzure(t *testing.T) {
	bin := azuriteBinary(t)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startAzurite(t, bin, port)

	t.Setenv("AZURE_STORAGE_ACCOUNT", azuriteAccount)
	t.Setenv("AZURE_STORAGE_KEY", azuriteKey)
	for _, v := range []string{"AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING",
		"AZURE_STORAGE_DOMAIN", "AZURE_STORAGE_PROTOCOL", "AZURE_STORAGE_IS_LOCAL_EMULATOR", "AZURE_STORAGE_IS_CDN"} {
		t.Setenv(v, "")
	}

	// gocloud cannot create containers; the SDK can.
	cred, err := container.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(
		fmt.Sprintf("http://%s/%s/%s", addr, azuriteAccount, testBucket), cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cc.Create(ctx, nil); err != nil {
		t.Fatalf("create container on Azurite: %v", err)
	}

	q := url.Values{}
	q.Set("protocol", "http")
	q.Set("domain", addr) // "127.0.0.1:port": path-style account URL
	testBackend(t, openT(t, "azblob://"+testBucket+"?"+q.Encode()))
}

// azuriteBinary runs scripts/azurite.sh, which installs Azurite into a
// cache directory if needed and prints the azurite-blob path.
func azuriteBinary(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "azurite.sh")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("Azurite install script: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stderr = &stderr
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Logf("still waiting for %s (npm install of Azurite)...", script)
		}
	}()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s failed (%v); the Azure tests need Node.js 20 and npm to install and run Azurite:\n%s", script, err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if bin == "" {
		t.Fatalf("%s printed no path:\n%s", script, stderr.String())
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found in PATH (needed to run %s): %v", bin, err)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a child's output for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startAzurite(t *testing.T, bin string, port int) {
	t.Helper()
	var logs lockedBuffer
	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		"--location", t.TempDir(),
		"--skipApiVersionCheck",
		"--loose",
		"--disableTelemetry",
		"--silent",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Only the process group this test started.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("azurite-blob exited before listening (%v):\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("azurite-blob not listening on %s after 60s:\n%s", addr, logs.String())
		}
	}
}
