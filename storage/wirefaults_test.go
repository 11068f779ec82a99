package storage

// A repository on a real S3 server (SeaweedFS) behind test/faultproxy:
// under each fault a backup (save, flush, snapshot) and its reload either
// complete with every byte checked or fail with an error wrapping
// backend.ErrUnavailable, within a bounded time and number of requests;
// once the fault heals, a retry of the backup on the same handle
// succeeds and Verify, reading every pack, finds nothing wrong.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
	"github.com/crayfish-backup/crayfish/test/faultproxy"
)

const wireAttempts = 4

var wireRetry = backend.RetryPolicy{Attempts: wireAttempts, Base: 50 * time.Millisecond, Max: 400 * time.Millisecond}

// wireBackup is a backup of four 4 MiB files and 40 small ones (two data
// packs), its content chosen by seed.
func wireBackup(id string, seed uint64) *cloudBackup {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := newCloudBackup(id)
	mtime := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := range 4 {
		b.cloudFile(fmt.Sprintf("big/%d", i), randBytes(rng, ChunkSize), mtime)
	}
	for i := range 40 {
		b.cloudFile(fmt.Sprintf("small/%02d", i), randBytes(rng, 1+rng.IntN(4096)), mtime)
	}
	return b
}

// trySave is cloudBackup.save returning its error instead of failing.
func (b *cloudBackup) trySave(ctx context.Context, r *Repository) error {
	ids := make([]ObjectID, 0, len(b.chunks))
	for id := range b.chunks {
		ids = append(ids, id)
	}
	sortIDs(ids)
	work := make(chan ObjectID)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range 4 {
		wg.Go(func() {
			for id := range work {
				if _, err := r.SaveBlob(ctx, BlobData, id, b.chunks[id]); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if first != nil {
		return fmt.Errorf("save blob: %w", first)
	}
	tree, err := r.SaveFiles(ctx, b.files)
	if err != nil {
		return fmt.Errorf("save files: %w", err)
	}
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	m := *b.m
	m.Nodes = []NodeManifest{{NodeID: "node-1", Entries: int64(len(b.files)), Tree: tree, Stats: NodeStats{Files: int64(len(b.files))}}}
	if err := r.PutManifest(ctx, &m); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	b.m.Nodes = m.Nodes
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// tryCheck is cloudBackup.check returning its error: a load error as it
// came, a wrong byte as errWireMismatch.
func (b *cloudBackup) tryCheck(ctx context.Context, r *Repository) error {
	m, err := r.GetManifest(ctx, b.m.BackupID)
	if err != nil {
		return err
	}
	if len(m.Nodes) != 1 || !slices.Equal(m.Nodes[0].Tree, b.m.Nodes[0].Tree) {
		return fmt.Errorf("%w: snapshot %s: %+v", errWireMismatch, b.m.BackupID, m.Nodes)
	}
	files, err := r.LoadFiles(ctx, &m.Nodes[0])
	if err != nil {
		return err
	}
	if len(files) != len(b.files) {
		return fmt.Errorf("%w: %d files loaded, %d saved", errWireMismatch, len(files), len(b.files))
	}
	for i, f := range files {
		if f.Path != b.files[i].Path || f.Content != b.files[i].Content || !slices.Equal(f.Chunks, b.files[i].Chunks) {
			return fmt.Errorf("%w: entry %d: %+v", errWireMismatch, i, f)
		}
		h := sha256.New()
		for _, c := range f.Chunks {
			data, err := r.LoadBlob(ctx, c)
			if err != nil {
				return err
			}
			if !bytes.Equal(data, b.chunks[c]) {
				return fmt.Errorf("%w: %s chunk %s", errWireMismatch, f.Path, c)
			}
			h.Write(data)
		}
		if ObjectID(h.Sum(nil)) != f.Content {
			return fmt.Errorf("%w: %s does not hash to its content", errWireMismatch, f.Path)
		}
	}
	return nil
}

var errWireMismatch = errors.New("loaded bytes differ from the saved ones")

// wireFault is one fault: start applies it (it may start goroutines that
// act on the proxy or the server as the backup runs, and must stop them
// by the time heal returns); heal undoes it.
type wireFault struct {
	name  string
	start func(t *testing.T, s *wireStore)
	heal  func(t *testing.T, s *wireStore)
}

type wireStore struct {
	srv *emulators.Server
	p   *faultproxy.Proxy
	url string
	wg  sync.WaitGroup
}

// after runs f once bytesUp more request bytes went through the proxy.
func (s *wireStore) after(bytesUp int64, f func()) {
	from := s.p.Stats().BytesUp
	s.wg.Go(func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if s.p.Stats().BytesUp-from >= bytesUp {
				f()
				return
			}
		}
	})
}

func heal(t *testing.T, s *wireStore) { s.wg.Wait(); s.p.Heal() }

var wireFaults = []wireFault{
	{name: "Latency", start: func(t *testing.T, s *wireStore) {
		s.p.SetLatency(faultproxy.Up, 50*time.Millisecond)
		s.p.SetLatency(faultproxy.Down, 50*time.Millisecond)
	}, heal: heal},
	{name: "Bandwidth", start: func(t *testing.T, s *wireStore) {
		s.p.SetBandwidth(faultproxy.Up, 4<<20)
		s.p.SetBandwidth(faultproxy.Down, 4<<20)
	}, heal: heal},
	{name: "ResetMidUpload", start: func(t *testing.T, s *wireStore) {
		s.p.SetBandwidth(faultproxy.Up, 8<<20) // uploads long enough to be cut
		s.after(3<<20, func() { s.p.ResetAll() })
		s.after(9<<20, func() { s.p.ResetAll() })
	}, heal: heal},
	{name: "Stall", start: func(t *testing.T, s *wireStore) {
		s.after(2<<20, func() { s.p.SetStall(true) }) // until healed
	}, heal: heal},
	{name: "SlowDownBursts", start: func(t *testing.T, s *wireStore) {
		s.p.FailFraction(0.2, faultproxy.SlowDown)
		s.after(1<<20, func() { s.p.FailNext(3, faultproxy.SlowDown) })
		s.after(6<<20, func() { s.p.FailNext(3, faultproxy.SlowDown) })
	}, heal: heal},
	{name: "TooManyRequests", start: func(t *testing.T, s *wireStore) {
		s.p.FailFraction(0.25, faultproxy.TooManyRequests)
	}, heal: heal},
	{name: "SeaweedRestart", start: func(t *testing.T, s *wireStore) {
		s.after(3<<20, func() {
			if err := s.srv.Kill(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Second)
			if err := s.srv.Restart(); err != nil {
				t.Error(err)
			}
		})
	}, heal: func(t *testing.T, s *wireStore) {
		s.wg.Wait()
		waitWritable(t, s)
	}},
}

// waitWritable waits until the store takes writes again (a restarted weed
// needs about ten seconds), with the default 30 s response-header bound: a
// restarted weed was once seen taking no write for two minutes of tries
// cut at 2 s.
func waitWritable(t *testing.T, s *wireStore) {
	u, _ := url.Parse(s.url)
	q := u.Query()
	q.Del("header_timeout")
	u.RawQuery = q.Encode()
	be, err := backend.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	begin := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := be.Put(ctx, "probe", []byte("probe"), false)
		cancel()
		if err == nil {
			t.Logf("MEASURE writable %v after the fault", time.Since(begin).Round(time.Millisecond))
			return
		}
		if time.Since(begin) > 3*time.Minute {
			log := s.srv.Log.String()
			t.Fatalf("the store takes no writes 3 minutes after the fault: %v\nweed log (end):\n%s", err, log[max(0, len(log)-6000):])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestWireFaultRepository(t *testing.T) {
	srv := emulators.StartSeaweedFS(t) // fails the test if weed is missing
	srv.Setenv(t)
	p, err := faultproxy.New(srv.Endpoint[len("http://"):], faultproxy.HTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u, _ := url.Parse(srv.URL)
	q := u.Query()
	q.Set("endpoint", "http://"+p.Addr())
	q.Set("header_timeout", "2s")
	q.Set("idle_timeout", "2s")
	q.Set("dial_timeout", "2s")
	u.RawQuery = q.Encode()
	s := &wireStore{srv: srv, p: p, url: u.String()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	init, err := Init(ctx, s.url, InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		t.Fatal(err)
	}
	init.Close()
	open := func() *Repository {
		t.Helper()
		r, err := Open(ctx, s.url, OpenOptions{Secret: password, Retry: wireRetry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}

	// A fault-free run of the same work: the requests it takes.
	r := open()
	before := p.Stats().Requests
	base := wireBackup("20260506T070809.000000Z-wire-base", 1)
	if err := base.trySave(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := base.tryCheck(ctx, open()); err != nil {
		t.Fatal(err)
	}
	baseline := p.Stats().Requests - before
	t.Logf("MEASURE fault-free backup and reload: %d requests", baseline)

	for i, f := range wireFaults {
		t.Run(f.name, func(t *testing.T) {
			r := open()
			b := wireBackup(fmt.Sprintf("20260506T070809.%06dZ-wire-%s", i+1, f.name), uint64(100+i))
			before := p.Stats()
			begin := time.Now()
			f.start(t, s)
			opCtx, opCancel := context.WithTimeout(ctx, 3*time.Minute) // a bound, not a speed test
			err := b.trySave(opCtx, r)
			if err == nil {
				err = b.tryCheck(opCtx, open())
			}
			opCancel()
			took := time.Since(begin)
			after := p.Stats()
			f.heal(t, s)
			t.Logf("MEASURE %s: %v, %d requests (%d injected), %d connections, %d resets: %v", f.name, took.Round(time.Millisecond),
				after.Requests-before.Requests, after.Injected-before.Injected, after.Connections-before.Connections, after.Resets-before.Resets, err)
			switch {
			case err == nil:
			case errors.Is(err, errWireMismatch):
				t.Fatalf("wrong bytes under %s: %v", f.name, err)
			case !errors.Is(err, backend.ErrUnavailable) || !backend.IsTransient(err):
				t.Fatalf("%s: %v, want success or a transient error wrapping backend.ErrUnavailable", f.name, err)
			}
			if n := after.Requests - before.Requests; n > wireAttempts*(baseline+2) {
				t.Fatalf("%d requests under %s, more than %d attempts × (%d + 2)", n, f.name, wireAttempts, baseline)
			}

			// Healed: the same handle finishes the backup, and the
			// repository holds every byte.
			if err != nil {
				if err := b.trySave(ctx, r); err != nil {
					t.Fatalf("the backup again on the same handle after %s: %v", f.name, err)
				}
			}
			if err := b.tryCheck(ctx, open()); err != nil {
				t.Fatalf("reload after %s: %v", f.name, err)
			}
			again := wireBackup(b.m.BackupID[:len(b.m.BackupID)-len(f.name)]+"again", uint64(100+i))
			if err := again.trySave(ctx, open()); err != nil {
				t.Fatalf("a fresh backup of the same data after %s: %v", f.name, err)
			}
			rep, err := open().Verify(ctx, VerifyOptions{ReadData: true})
			if err != nil || len(rep.Problems) != 0 || rep.PacksRead != rep.Packs {
				t.Fatalf("Verify after %s: %v %+v", f.name, err, rep)
			}
		})
	}
}
