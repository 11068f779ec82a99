// Package emulators starts object-store emulators that speak the real wire
// protocols on 127.0.0.1, for tests in any package that need a repository on
// s3://, gs:// or azblob:// without a cloud account:
//
//   - StartS3: gofakes3 (s3mem backend), in-process, over HTTP.
//   - StartGCS: fake-gcs-server's fakestorage, in-process, over HTTP (JSON
//     API for writes and listings, XML API for reads, as the Go client uses
//     them).
//   - StartAzurite: Azurite's azurite-blob (Node.js), a child process shared
//     by every caller in the test binary, installed by scripts/azurite.sh.
//   - StartSeaweedFS: a real S3 server, SeaweedFS's weed mini, a child
//     process per test (one at a time on the machine), built from its Go
//     module by scripts/seaweedfs.sh. Server.Kill crashes it and
//     Server.Restart brings it back on the same address and data, so a
//     test can take the store away in the middle of a backup.
//
// Each call creates a fresh bucket (container) with a random name and returns
// a Server: the repository URL to give gocloud.dev/blob (storage.Open,
// backend.Open, the crayfish binary's --repository) and the environment a
// process needs to reach the emulator with the cloud SDKs. In the test
// process call Server.Setenv before the first Open; for a child process
// (crayfish init, an agent) append Server.Env to os.Environ() — an
// exec.Cmd without Env inherits the test process's environment as it is at
// Start, so Setenv before starting it works too.
//
// What each SDK reads from the environment, and when:
//
//   - S3 (aws-sdk-go-v2 via s3blob): credentials and config on every Open.
//   - GCS (cloud.google.com/go/storage via gcsblob): whether
//     STORAGE_EMULATOR_HOST is set decides the credentials once per process
//     (at the first gs:// Open; without it, the first Open looks for real
//     Google credentials); the emulator host itself is read on every Open.
//     Distinct GCS servers can therefore follow each other in one process,
//     but not run at the same time.
//   - Azure (azure-sdk-for-go via azureblob): the account, key and every
//     other AZURE_STORAGE_* variable are read ONCE per process, at the first
//     azblob:// Open, and never again. Set the Azure environment before that
//     first Open and keep it identical for every Azure test in the binary:
//     every Azurite Server has the same Env (Azurite's well-known development
//     account); its address travels in the URL (domain=127.0.0.1:port).
//
// The functions fail the test (t.Fatal) when an emulator cannot start; they
// never skip. Tests that set the environment (Setenv) cannot run in parallel.
package emulators

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one bucket on a running emulator.
type Server struct {
	// URL is the repository URL for gocloud.dev/blob, e.g.
	// s3://bucket?endpoint=http://127.0.0.1:PORT&use_path_style=true&region=us-east-1&disable_https=true.
	URL string
	// Env holds the KEY=VALUE pairs a process needs to reach the emulator:
	// credentials, the emulator address where the SDK takes it from the
	// environment, and empty values for the variables that would otherwise
	// pull in the developer's cloud configuration. Empty values count as
	// unset for every SDK involved.
	Env []string
	// Endpoint is the emulator's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Bucket is the bucket's (Azure: container's) name.
	Bucket string
	// Log collects the emulator's log: for GCS an access log, one line per
	// request; for S3 gofakes3's warnings and errors; for Azurite the
	// azurite-blob process's output (shared by every Azurite Server).
	Log *Log

	weed *seaweedProcess // SeaweedFS only: Kill and Restart
}

// Setenv sets Env in the current process for the duration of the test
// (t.Setenv: not allowed in parallel tests).
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Environ returns os.Environ() with Env appended (later entries win), for
// exec.Cmd.Env of a child process.
func (s *Server) Environ() []string {
	return append(os.Environ(), s.Env...)
}

// Log is a concurrency-safe buffer.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Reset empties the log.
func (l *Log) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

// String returns what was written since the last Reset.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// bucketName returns a fresh name valid for S3, GCS and Azure containers
// (3-63 characters of lowercase letters, digits and single hyphens).
func bucketName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails
	return "crayfish-" + hex.EncodeToString(b)
}

// installedBinary runs an install script of scripts/ (found in the module
// root) with args; the script installs its tool into a cache if needed and
// prints the binary's path. what names the wait in the test log.
func installedBinary(t testing.TB, script string, args []string, what string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("finding scripts/%s: %w", script, err)
	}
	path := filepath.Join(root, "scripts", script)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("install script: %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", append([]string{path}, args...)...)
	cmd.Stderr = &stderr
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Logf("still waiting for %s (%s)...", path, what)
		}
	}()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s failed (%v):\n%s", path, strings.Join(args, " "), err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if bin == "" {
		return "", fmt.Errorf("%s printed no path:\n%s", path, stderr.String())
	}
	return bin, nil
}

// s3Env is the environment of an S3 client of an emulator: the signing
// identity, and nothing from the developer's AWS setup (no
// instance-metadata lookups off loopback; the URL's endpoint decides where
// requests go).
func s3Env(accessKey, secretKey string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + accessKey,
		"AWS_SECRET_ACCESS_KEY=" + secretKey,
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_PROFILE=",
		"AWS_SESSION_TOKEN=",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_S3=",
	}
}

// s3URL is the repository URL of bucket on an S3 server at endpoint
// (http://host:port): path-style requests over plain HTTP.
func s3URL(bucket, endpoint string) string {
	q := url.Values{}
	q.Set("endpoint", endpoint)
	q.Set("use_path_style", "true")
	q.Set("region", "us-east-1")
	q.Set("disable_https", "true")
	return "s3://" + bucket + "?" + q.Encode()
}
