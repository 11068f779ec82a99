package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
	"github.com/crayfish-backup/crayfish/test/faultproxy"
)

// Store kinds (-chaos.store).
const (
	StoreFile      = "file"      // a directory: no store faults
	StoreGofakes3  = "gofakes3"  // an S3 emulator in this process
	StoreSeaweedFS = "seaweedfs" // a real S3 server behind a fault proxy
)

// Store modes of the in-process S3 server the nemesis can switch.
const (
	storeHealthy int32 = iota
	storeOutage        // every request answers 503 SlowDown
	storeSlow          // every request waits 300 ms first
)

// Store is the repository's object store: a directory (file://), an S3
// emulator in this process, or a real S3 server (SeaweedFS) that the
// agents reach through a fault-injecting proxy. The nemesis injects store
// faults through Inject.
type Store struct {
	URL  string
	Env  []string // what clients of the store need (S3 credentials)
	kind string
	dir  string // file://

	// gofakes3
	mem  *s3mem.Backend
	srv  *httptest.Server
	bkt  string
	mode atomic.Int32

	// SeaweedFS
	weed  *emulators.Server
	proxy *faultproxy.Proxy
	// direct reads the bucket without the proxy (the checkers' view).
	direct backend.Backend
}

// NewFileStore is a file:// repository under dir.
func NewFileStore(dir string) *Store {
	d := filepath.Join(dir, "repository")
	return &Store{URL: "file://" + d, dir: d, kind: StoreFile}
}

// NewS3Store starts gofakes3 on 127.0.0.1 behind a fault switch.
func NewS3Store() (*Store, error) {
	s := &Store{mem: s3mem.New(), bkt: "chaos", kind: StoreGofakes3}
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

// NewSeaweedStore starts SeaweedFS (emulators.StartSeaweedFS: it stops
// when t ends) and a fault proxy in front of it on 127.0.0.1, outside the
// agents' addresses, so partitions never cut the store. The agents get the
// proxy's address; the checkers read the bucket directly. It sets the S3
// credentials in this process (t.Setenv).
func NewSeaweedStore(t testing.TB) (*Store, error) {
	weed := emulators.StartSeaweedFS(t)
	weed.Setenv(t)
	u, err := url.Parse(weed.Endpoint)
	if err != nil {
		return nil, err
	}
	proxy, err := faultproxy.New(u.Host, faultproxy.HTTP())
	if err != nil {
		return nil, err
	}
	viaProxy, err := withEndpoint(weed.URL, "http://"+proxy.Addr())
	if err != nil {
		proxy.Close()
		return nil, err
	}
	direct, err := backend.Open(context.Background(), weed.URL)
	if err != nil {
		proxy.Close()
		return nil, fmt.Errorf("open %s: %w", weed.URL, err)
	}
	return &Store{URL: viaProxy, Env: weed.Env, kind: StoreSeaweedFS, weed: weed, proxy: proxy, direct: direct, bkt: weed.Bucket}, nil
}

// withEndpoint is the s3:// URL raw with its endpoint replaced.
func withEndpoint(raw, endpoint string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("endpoint", endpoint)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Kind is the store's kind (StoreFile, StoreGofakes3, StoreSeaweedFS).
func (s *Store) Kind() string { return s.kind }

// Faults lists the store fault kinds this store can take.
func (s *Store) Faults() []string {
	switch s.kind {
	case StoreGofakes3:
		return StoreFaults
	case StoreSeaweedFS:
		return SeaweedFaults
	}
	return nil
}

// Inject starts a store fault of the given kind and returns what heals it
// and a description of what was done. rng draws the fault's parameters.
func (s *Store) Inject(kind string, rng *rand.Rand) (heal func() string, detail string) {
	if s.kind == StoreGofakes3 {
		mode := storeOutage
		if kind == FaultStoreSlow {
			mode = storeSlow
		}
		s.mode.Store(mode)
		return func() string { s.mode.Store(storeHealthy); return "" }, ""
	}
	p := s.proxy
	switch kind {
	case FaultStoreOutage:
		p.FailFraction(1, faultproxy.SlowDown)
		return healProxy(p), "every request answers 503 SlowDown"
	case FaultStoreSlow:
		d := time.Duration(100+rng.IntN(400)) * time.Millisecond
		p.SetLatency(faultproxy.Down, d)
		return healProxy(p), "answers " + d.String() + " late"
	case FaultStoreThrottle:
		e := faultproxy.SlowDown
		if rng.IntN(2) == 0 {
			e = faultproxy.TooManyRequests
		}
		frac := 0.2 + 0.6*rng.Float64()
		p.FailFraction(frac, e)
		return healProxy(p), fmt.Sprintf("%.0f%% of requests answer %d %s", frac*100, e.Status, e.Code)
	case FaultStoreReset:
		after := int64(16<<10 + rng.IntN(4<<20))
		n := p.ResetAll()
		p.ResetAfter(after)
		return healProxy(p), fmt.Sprintf("%d connections reset; every connection resets after %d bytes", n, after)
	case FaultStoreStall:
		p.SetStall(true)
		return healProxy(p), "answers held back (a hung server)"
	case FaultStoreBandwidth:
		bps := int64(256<<10 + rng.IntN(2<<20))
		p.SetBandwidth(faultproxy.Up, bps)
		p.SetBandwidth(faultproxy.Down, bps)
		return healProxy(p), fmt.Sprintf("%d bytes/s each way", bps)
	case FaultStoreRestart:
		if err := s.weed.Kill(); err != nil {
			return func() string { return "" }, "kill: " + err.Error()
		}
		return func() string {
			if err := s.weed.Restart(); err != nil {
				return "restart: " + err.Error()
			}
			return ""
		}, "SeaweedFS killed (SIGKILL), restarted on healing"
	}
	return func() string { return "" }, "unknown store fault " + kind
}

func healProxy(p *faultproxy.Proxy) func() string {
	return func() string { p.Heal(); return "" }
}

// Stats describes the store's traffic (SeaweedFS: the proxy's counters).
func (s *Store) Stats() string {
	if s.proxy == nil {
		return ""
	}
	st := s.proxy.Stats()
	return fmt.Sprintf("proxy: %d connections (%d reset, %d refused), %d requests (%d answered by the proxy), %d MiB up, %d MiB down",
		st.Connections, st.Resets, st.Refused, st.Requests, st.Injected, st.BytesUp>>20, st.BytesDown>>20)
}

// HasSnapshot reports whether the backup's snapshot object exists.
func (s *Store) HasSnapshot(backupID string) error {
	switch s.kind {
	case StoreGofakes3:
		if _, err := s.mem.HeadObject(s.bkt, "snapshots/"+backupID); err != nil {
			return fmt.Errorf("snapshots/%s: %w", backupID, err)
		}
		return nil
	case StoreSeaweedFS:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.direct.Size(ctx, "snapshots/"+backupID); err != nil {
			if errors.Is(err, backend.ErrNotFound) {
				return fmt.Errorf("snapshots/%s: %w", backupID, os.ErrNotExist)
			}
			return fmt.Errorf("snapshots/%s: %w", backupID, err)
		}
		return nil
	}
	_, err := os.Stat(filepath.Join(s.dir, "snapshots", backupID))
	return err
}

// Close stops the in-process server and the proxy (SeaweedFS stops with
// its test).
func (s *Store) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.direct != nil {
		s.direct.Close()
	}
}

func (s *Store) String() string {
	switch s.kind {
	case StoreGofakes3:
		return "s3 (in-process gofakes3)"
	case StoreSeaweedFS:
		return "s3 (SeaweedFS " + strings.TrimPrefix(s.weed.Endpoint, "http://") + " behind a fault proxy)"
	}
	return strings.TrimPrefix(s.URL, "file://")
}
