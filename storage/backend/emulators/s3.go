package emulators

import (
	"log"
	"net/http/httptest"
	"net/url"
	"os"
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

	q := url.Values{}
	q.Set("endpoint", srv.URL)
	q.Set("use_path_style", "true")
	q.Set("region", "us-east-1")
	q.Set("disable_https", "true")
	return &Server{
		URL:      "s3://" + bucket + "?" + q.Encode(),
		Endpoint: srv.URL,
		Bucket:   bucket,
		Log:      logs,
		Env: []string{
			// gofakes3 accepts any credentials, but the SDK signs every
			// request and needs some.
			"AWS_ACCESS_KEY_ID=crayfish",
			"AWS_SECRET_ACCESS_KEY=crayfish-secret",
			// Nothing from the developer's AWS setup, and no
			// instance-metadata lookups off loopback.
			"AWS_CONFIG_FILE=" + os.DevNull,
			"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
			"AWS_PROFILE=",
			"AWS_SESSION_TOKEN=",
			"AWS_EC2_METADATA_DISABLED=true",
			// The URL's endpoint decides where requests go.
			"AWS_ENDPOINT_URL=",
			"AWS_ENDPOINT_URL_S3=",
		},
	}
}
