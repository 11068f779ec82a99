package emulators

import (
	"log"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// StartS3 starts gofakes3 (s3mem backend, in memory) in-process on
// 127.0.0.1 with one new bucket; it stops when the test ends. Clients reach
// it through gocloud's s3blob (aws-sdk-go-v2) with path-style requests over
// plain HTTP.
func StartS3(t testing.TB) *Server {
	t.Helper()
	bucket := bucketName()
	mem := s3mem.New()
	if err := mem.CreateBucket(bucket); err != nil {
		t.Fatalf("gofakes3: create bucket %s: %v", bucket, err)
	}
	logs := new(Log)
	faker := gofakes3.New(mem, gofakes3.WithLogger(gofakes3.StdLog(log.New(logs, "gofakes3: ", log.LstdFlags), gofakes3.LogErr, gofakes3.LogWarn)))
	srv := httptest.NewServer(faker.Server()) // 127.0.0.1
	t.Cleanup(srv.Close)

	return &Server{
		URL:      s3URL(bucket, srv.URL),
		Endpoint: srv.URL,
		Bucket:   bucket,
		Log:      logs,
		// gofakes3 accepts any credentials, but the SDK signs every
		// request and needs some.
		Env: s3Env("crayfish", "crayfish-secret"),
	}
}
