package backend

// Faults on the wire between the s3:// client and a real S3 server
// (SeaweedFS), injected by test/faultproxy: each call either succeeds with
// the right bytes or fails with an error wrapping ErrUnavailable, within a
// bounded time and a bounded number of HTTP requests, and the store works
// again once the fault heals.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
	"github.com/crayfish-backup/crayfish/test/faultproxy"
)

// Short bounds, so that a stalled try fails in seconds.
const (
	wireHeaderTimeout = 2 * time.Second
	wireIdleTimeout   = 2 * time.Second
	wireAttempts      = 4
)

// proxiedURL is srv's repository URL with the endpoint replaced by p and
// the HTTP bounds given.
func proxiedURL(t testing.TB, srvURL string, p *faultproxy.Proxy, params ...string) string {
	t.Helper()
	u, err := url.Parse(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("endpoint", "http://"+p.Addr())
	for _, kv := range params {
		k, v, _ := strings.Cut(kv, "=")
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func endpointHost(t testing.TB, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func randomData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// wireRig is one SeaweedFS behind one proxy, and a retrying backend
// through it.
type wireRig struct {
	srv *emulators.Server
	p   *faultproxy.Proxy
	b   Backend
}

func newWireRig(t *testing.T) *wireRig {
	srv := emulators.StartSeaweedFS(t) // fails the test if weed is missing
	srv.Setenv(t)
	p, err := faultproxy.New(endpointHost(t, srv.Endpoint), faultproxy.HTTP())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	raw := openT(t, proxiedURL(t, srv.URL, p, "header_timeout="+wireHeaderTimeout.String(),
		"idle_timeout="+wireIdleTimeout.String(), "dial_timeout=2s"))
	return &wireRig{srv: srv, p: p, b: WithRetry(raw, RetryPolicy{Attempts: wireAttempts, Base: 50 * time.Millisecond, Max: 400 * time.Millisecond})}
}

// requests runs f and returns the HTTP requests the proxy saw meanwhile,
// how long it took and f's error.
func (w *wireRig) requests(f func() error) (int64, time.Duration, error) {
	before := w.p.Stats().Requests
	begin := time.Now()
	err := f()
	return w.p.Stats().Requests - before, time.Since(begin), err
}

// mustRoundTrip stores data under key and reads it back through the rig.
func (w *wireRig) mustRoundTrip(t *testing.T, ctx context.Context, key string, data []byte) {
	t.Helper()
	if err := w.b.Put(ctx, key, data, false); err != nil {
		t.Fatalf("Put(%s) after healing: %v", key, err)
	}
	got, err := w.b.Get(ctx, key)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get(%s) after healing: %d bytes, %v", key, len(got), err)
	}
}

// wantUnavailable checks a call that gave up: ErrUnavailable, transient,
// after exactly wireAttempts requests (when the proxy saw each try).
func wantUnavailable(t *testing.T, what string, err error, requests int64, exact bool, d time.Duration) {
	t.Helper()
	t.Logf("MEASURE %s: failed after %v and %d requests: %v", what, d.Round(time.Millisecond), requests, err)
	if !errors.Is(err, ErrUnavailable) || !IsTransient(err) {
		t.Fatalf("%s: %v, want a transient error wrapping ErrUnavailable", what, err)
	}
	if requests > wireAttempts || (exact && requests != wireAttempts) {
		t.Fatalf("%s: %d HTTP requests for %d attempts", what, requests, wireAttempts)
	}
}

func TestWireFaultBackend(t *testing.T) {
	w := newWireRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	big := randomData(1, 8<<20)
	if err := w.b.Put(ctx, "fixture/big", big, false); err != nil {
		t.Fatal(err)
	}

	t.Run("SlowDownBurst", func(t *testing.T) {
		data := randomData(2, 3<<20) // sent with Expect: 100-continue
		w.p.FailNext(3, faultproxy.SlowDown)
		n, d, err := w.requests(func() error { return w.b.Put(ctx, "slowdown/a", data, false) })
		t.Logf("MEASURE 3 SlowDown then success: %v, %d requests", d.Round(time.Millisecond), n)
		if err != nil || n != 4 {
			t.Fatalf("Put through 3 SlowDown answers: %v after %d requests, want success after 4", err, n)
		}
		w.p.FailNext(wireAttempts+2, faultproxy.SlowDown)
		n, d, err = w.requests(func() error { _, err := w.b.Get(ctx, "slowdown/a"); return err })
		wantUnavailable(t, "Get under SlowDown", err, n, true, d)
		w.p.Heal()
		w.mustRoundTrip(t, ctx, "slowdown/a", data)
	})

	t.Run("TooManyRequests", func(t *testing.T) {
		w.p.FailNext(2, faultproxy.TooManyRequests)
		var got []byte
		n, _, err := w.requests(func() (err error) { got, err = w.b.Get(ctx, "fixture/big"); return err })
		if err != nil || n != 3 || !bytes.Equal(got, big) {
			t.Fatalf("Get through two 429s: %v after %d requests", err, n)
		}
		w.p.FailFraction(1, faultproxy.TooManyRequests)
		n, d, err := w.requests(func() error { return w.b.Delete(ctx, "fixture/none") })
		wantUnavailable(t, "Delete under 429", err, n, true, d)
		w.p.Heal()
	})

	t.Run("InternalErrorFraction", func(t *testing.T) {
		// Every third request fails: each call needs at most two tries.
		w.p.FailFraction(1.0/3, faultproxy.InternalError)
		for i := range 6 {
			data := randomData(uint64(10+i), 1<<20)
			w.mustRoundTrip(t, ctx, fmt.Sprintf("fraction/%d", i), data)
		}
		w.p.Heal()
	})

	t.Run("StallBeforeHeaders", func(t *testing.T) {
		w.p.SetStall(true)
		n, d, err := w.requests(func() error { _, err := w.b.Size(ctx, "fixture/big"); return err })
		wantUnavailable(t, "Size on a stalled server", err, n, true, d)
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("a stalled server's error does not wrap ErrStalled: %v", err)
		}
		w.p.Heal()
		w.mustRoundTrip(t, ctx, "stall/a", randomData(3, 1<<20))
	})

	t.Run("StallMidDownload", func(t *testing.T) {
		w.p.SetBandwidth(faultproxy.Down, 1<<20)
		errc := make(chan error, 1)
		before := w.p.Stats()
		go func() { _, err := w.b.Get(ctx, "fixture/big"); errc <- err }()
		waitUntil(t, func() bool { return w.p.Stats().BytesDown-before.BytesDown > 1<<20 })
		w.p.SetStall(true)
		stalled := time.Now()
		err := <-errc
		wantUnavailable(t, "Get stalled mid-body", err, w.p.Stats().Requests-before.Requests, true, time.Since(stalled))
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("%v, want ErrStalled", err)
		}
		w.p.Heal()
	})

	t.Run("UploadNotRead", func(t *testing.T) {
		// 1 byte/s: the store stops taking the body once the buffers on
		// the way are full.
		w.p.SetBandwidth(faultproxy.Up, 1)
		n, d, err := w.requests(func() error { return w.b.Put(ctx, "stall/upload", big, false) })
		wantUnavailable(t, "Put not read", err, n, false, d)
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("%v, want ErrStalled", err)
		}
		w.p.Heal()
		w.mustRoundTrip(t, ctx, "stall/upload", big)
	})

	t.Run("SlowHealthyTransfers", func(t *testing.T) {
		// 2 MiB/s: 15 MiB (a pack's size, one PUT) take 7.5 s each way,
		// beyond 5 s bounds, and must
		// not be cut while bytes move. (An upload's progress is seen where
		// the transport takes the body, before the client's socket buffer
		// of up to 4 MiB: draining it must take less than the idle bound,
		// hence 5 s here and not the rig's 2 s.)
		defer w.p.Heal()
		slow := WithRetry(openT(t, proxiedURL(t, w.srv.URL, w.p, "header_timeout=5s", "idle_timeout=5s")),
			RetryPolicy{Attempts: 1})
		w.p.SetBandwidth(faultproxy.Up, 2<<20)
		w.p.SetBandwidth(faultproxy.Down, 2<<20)
		w.p.SetLatency(faultproxy.Up, 100*time.Millisecond)
		w.p.SetLatency(faultproxy.Down, 100*time.Millisecond)
		data := randomData(4, 15<<20)
		n, d, err := w.requests(func() error {
			if err := slow.Put(ctx, "slow/a", data, false); err != nil {
				return err
			}
			got, err := slow.Get(ctx, "slow/a")
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("%d bytes differ from the %d stored", len(got), len(data))
			}
			return err
		})
		t.Logf("MEASURE 15 MiB up and down at 2 MiB/s, 100 ms each way: %v, %d requests", d.Round(time.Millisecond), n)
		if err != nil || n != 2 {
			t.Fatalf("%v, %d requests, want 2", err, n)
		}
	})

	t.Run("ResetMidUpload", func(t *testing.T) {
		w.p.SetBandwidth(faultproxy.Up, 4<<20)
		before := w.p.Stats()
		errc := make(chan error, 1)
		data := randomData(5, 8<<20)
		go func() { errc <- w.b.Put(ctx, "reset/a", data, true) }()
		waitUntil(t, func() bool { return w.p.Stats().BytesUp-before.BytesUp > 2<<20 })
		if w.p.ResetAll() == 0 {
			t.Fatal("no connection to reset")
		}
		err := <-errc
		n := w.p.Stats().Requests - before.Requests
		t.Logf("MEASURE create-only Put reset mid-body: %v after %d requests", err, n)
		if err != nil || n < 2 || n > wireAttempts+1 { // +1: the read-back of a landed try
			t.Fatalf("Put reset mid-body: %v after %d requests", err, n)
		}
		w.p.Heal()
		if got, err := w.b.Get(ctx, "reset/a"); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the reset upload's object: %d bytes, %v", len(got), err)
		}
		w.p.ResetAfter(1 << 20) // every try dies mid-body
		n, d, err := w.requests(func() error { return w.b.Put(ctx, "reset/b", data, false) })
		wantUnavailable(t, "Put reset after 1 MiB on every connection", err, n, true, d)
		w.p.Heal()
		if _, err := w.b.Get(ctx, "reset/b"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a cut upload left an object: %v", err)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		w.p.SetRefuse(true)
		w.p.ResetAll() // no pooled connection either
		before := w.p.Stats()
		_, err := w.b.Get(ctx, "fixture/big")
		s := w.p.Stats()
		t.Logf("MEASURE Get refused: %d connections: %v", s.Connections-before.Connections, err)
		if !errors.Is(err, ErrUnavailable) || s.Requests != before.Requests || s.Refused-before.Refused > wireAttempts {
			t.Fatalf("Get through refused connections: %v (%+v)", err, s)
		}
		w.p.Heal()
	})
}

// TestWireFaultSeaweedRestart: a store that crashes fails calls with
// ErrUnavailable at once; once it is back, what it acknowledged before the
// crash is there, byte for byte.
func TestWireFaultSeaweedRestart(t *testing.T) {
	w := newWireRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	objects := map[string][]byte{}
	for i := range 8 {
		key := fmt.Sprintf("before/%d", i)
		objects[key] = randomData(uint64(100+i), 1<<20+i)
		if err := w.b.Put(ctx, key, objects[key], true); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	n, d, err := w.requests(func() error { return w.b.Put(ctx, "during/a", objects["before/0"], false) })
	t.Logf("MEASURE Put while SeaweedFS is down: %v, %d requests: %v", d.Round(time.Millisecond), n, err)
	if !errors.Is(err, ErrUnavailable) || !IsTransient(err) {
		t.Fatalf("Put while the store is down: %v", err)
	}
	begin := time.Now()
	if err := w.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE SeaweedFS restart: %v", time.Since(begin).Round(time.Millisecond))
	for key, data := range objects {
		if got, err := w.b.Get(ctx, key); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s after the restart: %d bytes, %v", key, len(got), err)
		}
	}
	// A restarted weed takes a while to accept writes again: a write
	// through the rig's 2 s bounds may give up (clearly); one with the
	// default bounds waits it out.
	begin = time.Now()
	n, d, err = w.requests(func() error { return w.b.Put(ctx, "after/a", objects["before/1"], false) })
	t.Logf("MEASURE first Put after the restart (2 s bounds): %v, %d requests: %v", d.Round(time.Millisecond), n, err)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first Put after the restart: %v", err)
	}
	patient := WithRetry(openT(t, proxiedURL(t, w.srv.URL, w.p)), RetryPolicy{})
	if err := patient.Put(ctx, "after/b", objects["before/2"], false); err != nil {
		t.Fatalf("Put with the default bounds after the restart: %v", err)
	}
	t.Logf("MEASURE writable again %v after the restart", time.Since(begin).Round(time.Millisecond))
	w.mustRoundTrip(t, ctx, "after/c", objects["before/3"])
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
