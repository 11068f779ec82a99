package backend

// Conformance over the real wire protocols, against emulators on loopback
// (package emulators): gofakes3 and fake-gcs-server in-process, Azurite as a
// child process.

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
)

// TestS3 runs the suite through gocloud's s3blob (aws-sdk-go-v2) against
// gofakes3 v1.2.0 (s3mem backend) served over HTTP on 127.0.0.1.
func TestS3(t *testing.T) {
	srv := emulators.StartS3(t)
	// Credentials, and nothing from the developer's AWS setup (no
	// instance-metadata lookups off loopback): see emulators.StartS3.
	srv.Setenv(t)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("endpoint") != srv.Endpoint || q.Get("use_path_style") != "true" || q.Get("region") != "us-east-1" || q.Get("disable_https") != "true" {
		t.Fatalf("S3 URL %s: want endpoint=%s, path-style, us-east-1, plain HTTP", srv.URL, srv.Endpoint)
	}
	testBackend(t, openT(t, srv.URL))
}

// TestSeaweedFS runs the suite through gocloud's s3blob against a real S3
// server: SeaweedFS's weed mini (scripts/seaweedfs.sh builds it), on a
// loopback address of its own.
func TestSeaweedFS(t *testing.T) {
	srv := emulators.StartSeaweedFS(t)
	srv.Setenv(t)
	testBackend(t, openT(t, srv.URL))
}

// TestGCS runs the suite through gocloud's gcsblob (cloud.google.com/go/storage,
// JSON API) against fake-gcs-server v1.56.1's fakestorage in-process, over
// HTTP on 127.0.0.1; STORAGE_EMULATOR_HOST points the client at it (and
// PublicHost makes it serve the XML API reads: see emulators.StartGCS).
func TestGCS(t *testing.T) {
	srv := emulators.StartGCS(t)
	requests := srv.Log // access log, one line per request
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" {
		t.Fatalf("fake-gcs-server listens on %s, want 127.0.0.1", u.Host)
	}
	srv.Setenv(t) // STORAGE_EMULATOR_HOST, no Google credentials lookups
	b := openT(t, srv.URL)
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

// TestAzure runs the suite through gocloud's azureblob (azure-sdk-for-go
// azblob) against Azurite 3.37.0 (npm) started as a child process on
// 127.0.0.1. scripts/azurite.sh installs it on first use; without Node.js
// and npm this test fails.
func TestAzure(t *testing.T) {
	srv := emulators.StartAzurite(t)
	// gocloud reads the Azure variables once per process, at the first
	// azblob Open: set before it, the same for every Azure test.
	srv.Setenv(t)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if d := u.Query().Get("domain"); !strings.HasPrefix(d, "127.0.0.1:") || u.Query().Get("protocol") != "http" {
		t.Fatalf("Azure URL %s: want protocol=http and domain=127.0.0.1:port (path-style account URL)", srv.URL)
	}
	testBackend(t, openT(t, srv.URL))
}
