package emulators

import (
	"net"
	"net/url"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// StartGCS starts fake-gcs-server's fakestorage in-process over HTTP on
// 127.0.0.1 (a port of its own) with one new bucket; it stops when the test
// ends. Clients reach it through gocloud's gcsblob (cloud.google.com/go/
// storage, JSON API), pointed at it by STORAGE_EMULATOR_HOST. Log receives
// its access log, one line per request.
func StartGCS(t testing.TB) *Server {
	t.Helper()
	logs := new(Log)
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		NoListener: false,
		Writer:     logs,
		// The Go client reads objects through the XML API at
		// http://HOST/BUCKET/OBJECT, which fake-gcs-server serves only for
		// requests addressed to its public host (compared without port).
		PublicHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	bucket := bucketName()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatalf("fake-gcs-server URL %q: %v", srv.URL(), err)
	}
	if host, _, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" {
		t.Fatalf("fake-gcs-server listens on %s, want 127.0.0.1", u.Host)
	}
	return &Server{
		URL:      "gs://" + bucket,
		Endpoint: "http://" + u.Host,
		Bucket:   bucket,
		Log:      logs,
		Env: []string{
			// host:port, no scheme. With it set, gcsblob uses no credentials
			// and sends every request to the emulator over plain HTTP.
			"STORAGE_EMULATOR_HOST=" + u.Host,
			"STORAGE_EMULATOR_HOST_GRPC=",
			// No credential lookups on the developer's machine or a GCE
			// metadata server.
			"GOOGLE_APPLICATION_CREDENTIALS=",
			"NO_GCE_CHECK=true",
		},
	}
}
