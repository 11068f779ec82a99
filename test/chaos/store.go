package chaos

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Store modes of the S3 server the nemesis can switch.
const (
	storeHealthy int32 = iota
	storeOutage        // every request answers 503 SlowDown
	storeSlow          // every request waits 300 ms first
)

// Store is the repository's object store: a directory (file://) or an
// S3 server speaking the real wire protocol in this process, whose faults
// the nemesis controls.
type Store struct {
	URL  string
	Env  []string // what clients of the store need (S3 credentials)
	dir  string   // file://
	mem  *s3mem.Backend
	srv  *httptest.Server
	bkt  string
	mode atomic.Int32
}

// NewFileStore is a file:// repository under dir.
func NewFileStore(dir string) *Store {
	d := filepath.Join(dir, "repository")
	return &Store{URL: "file://" + d, dir: d}
}

// NewS3Store starts gofakes3 on 127.0.0.1 behind a fault switch.
func NewS3Store() (*Store, error) {
	s := &Store{mem: s3mem.New(), bkt: "chaos"}
	if err := s.mem.CreateBucket(s.bkt); err != nil {
		return nil, err
	}
	faker := gofakes3.New(s.mem, gofakes3.WithLogger(gofakes3.StdLog(log.New(io.Discard, "", 0))))
	inner := faker.Server()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.mode.Load() {
		case storeOutage:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>chaos: store outage</Message></Error>`)
			return
		case storeSlow:
			time.Sleep(300 * time.Millisecond)
		}
		inner.ServeHTTP(w, r)
	}))
	q := url.Values{"endpoint": {s.srv.URL}, "use_path_style": {"true"}, "region": {"us-east-1"}, "disable_https": {"true"}}
	s.URL = "s3://" + s.bkt + "?" + q.Encode()
	s.Env = []string{"AWS_ACCESS_KEY_ID=chaos", "AWS_SECRET_ACCESS_KEY=chaos-secret", "AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull, "AWS_EC2_METADATA_DISABLED=true"}
	return s, nil
}

// IsS3 reports whether the store can take faults.
func (s *Store) IsS3() bool { return s.mem != nil }

// SetMode switches the S3 server's fault mode.
func (s *Store) SetMode(m int32) { s.mode.Store(m) }

// HasSnapshot reports whether the backup's snapshot object exists.
func (s *Store) HasSnapshot(backupID string) error {
	if s.mem == nil {
		_, err := os.Stat(filepath.Join(s.dir, "snapshots", backupID))
		return err
	}
	if _, err := s.mem.HeadObject(s.bkt, "snapshots/"+backupID); err != nil {
		return fmt.Errorf("snapshots/%s: %w", backupID, err)
	}
	return nil
}

// Close stops the S3 server.
func (s *Store) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

func (s *Store) String() string {
	if s.mem != nil {
		return "s3 (in-process gofakes3)"
	}
	return strings.TrimPrefix(s.URL, "file://")
}
