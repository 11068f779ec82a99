package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"google.golang.org/api/googleapi"
)

var errFlaky = errors.New("connection reset by peer (injected)")

// sleeps records the backoff WithRetry asks for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

// newRetrying returns a retrying mem backend over a Faulty.
func newRetrying(t *testing.T, p RetryPolicy) (Backend, *Faulty, *sleeps) {
	t.Helper()
	s := &sleeps{}
	if p.Sleep == nil {
		p.Sleep = s.sleep
	}
	f := NewFaulty(openT(t, "mem://"), 1)
	return WithRetry(f, p), f, s
}

func TestRetryTransientThenSuccess(t *testing.T) {
	ctx := context.Background()
	r, f, s := newRetrying(t, RetryPolicy{})
	f.FailNext(OpPut, 2, errFlaky)
	if err := r.Put(ctx, "k", []byte("v"), false); err != nil {
		t.Fatalf("Put: %v", err)
	}
	f.FailNext(OpGet, 4, errFlaky) // the last allowed try succeeds
	got, err := r.Get(ctx, "k")
	if err != nil || string(got) != "v" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	f.FailNext(OpGetRange, 1, errFlaky)
	f.FailNext(OpSize, 1, errFlaky)
	f.FailNext(OpDelete, 1, errFlaky)
	f.FailNext(OpList, 1, errFlaky)
	if got, err := r.GetRange(ctx, "k", 0, 1); err != nil || string(got) != "v" {
		t.Fatalf("GetRange = %q, %v", got, err)
	}
	if n, err := r.Size(ctx, "k"); err != nil || n != 1 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	var listed []string
	if err := r.List(ctx, "", func(oi ObjectInfo) error { listed = append(listed, oi.Key); return nil }); err != nil || !slices.Equal(listed, []string{"k"}) {
		t.Fatalf("List = %q, %v", listed, err)
	}
	if err := r.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want := map[Op]int{OpPut: 3, OpGet: 5, OpGetRange: 2, OpSize: 2, OpList: 2, OpDelete: 2}
	if got := f.Counts(); !mapsEqual(got, want) {
		t.Fatalf("Counts = %v, want %v", got, want)
	}
	if n := len(s.all()); n != 2+4+4 {
		t.Fatalf("%d sleeps, want 10", n)
	}
}

func mapsEqual(a, b map[Op]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRetryPermanentErrorsNotRetried(t *testing.T) {
	ctx := context.Background()
	r, f, s := newRetrying(t, RetryPolicy{})
	if _, err := r.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}
	if err := r.Delete(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete(missing) = %v", err)
	}
	if err := r.Put(ctx, "bad key", nil, false); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Put(bad key) = %v", err)
	}
	if err := r.Put(ctx, "k", []byte("1"), true); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, "k", []byte("1"), true); !errors.Is(err, ErrExists) {
		t.Fatalf("second Put(ifNotExist) = %v, want ErrExists", err)
	}
	if _, err := r.GetRange(ctx, "k", 0, 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("GetRange past the end = %v", err)
	}
	for _, perm := range []error{
		&googleapi.Error{Code: http.StatusBadRequest},
		&googleapi.Error{Code: http.StatusUnauthorized},
		&azcore.ResponseError{StatusCode: http.StatusForbidden},
		fmt.Errorf("wrapped: %w", &azcore.ResponseError{StatusCode: http.StatusConflict}),
		&statusErr{400},
		context.Canceled,
	} {
		f.FailNext(OpSize, 1, perm)
		if _, err := r.Size(ctx, "k"); !errors.Is(err, perm) {
			t.Fatalf("Size with injected %v = %v", perm, err)
		}
	}
	if n := len(s.all()); n != 0 {
		t.Fatalf("slept %d times for permanent errors", n)
	}
	want := map[Op]int{OpGet: 1, OpDelete: 1, OpPut: 3, OpGetRange: 1, OpSize: 6}
	if got := f.Counts(); !mapsEqual(got, want) {
		t.Fatalf("Counts = %v, want %v", got, want)
	}
}

// statusErr looks like an AWS SDK HTTP response error.
type statusErr struct{ code int }

func (e *statusErr) Error() string       { return fmt.Sprintf("https response error StatusCode: %d", e.code) }
func (e *statusErr) HTTPStatusCode() int { return e.code }

func TestIsTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errFlaky, true},
		{io.ErrUnexpectedEOF, true}, // a cut transfer
		{fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("x: %w", ErrNotFound), false},
		{fmt.Errorf("x: %w", ErrExists), false},
		{fmt.Errorf("x: %w", ErrInvalidKey), false},
		{&shortObjectError{"k", 5, 10, 7}, false},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{&googleapi.Error{Code: 503}, true},
		{&googleapi.Error{Code: 500}, true},
		{&googleapi.Error{Code: 429}, true},
		{&googleapi.Error{Code: 408}, true},
		{&googleapi.Error{Code: 400}, false},
		{&googleapi.Error{Code: 412}, false},
		{&azcore.ResponseError{StatusCode: 503}, true},
		{&azcore.ResponseError{StatusCode: 403}, false},
		{&statusErr{500}, true},
		{&statusErr{403}, false},
		{fmt.Errorf("open: %w", errors.ErrUnsupported), true},
	} {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetryAttemptsBounded(t *testing.T) {
	ctx := context.Background()
	for _, attempts := range []int{0, 1, 3} {
		r, f, s := newRetrying(t, RetryPolicy{Attempts: attempts})
		f.FailNext(OpPut, 100, errFlaky)
		err := r.Put(ctx, "k", []byte("v"), false)
		if !errors.Is(err, errFlaky) {
			t.Fatalf("Put = %v, want the injected error", err)
		}
		want := attempts
		if want == 0 {
			want = 5 // default
		}
		if got := f.Counts()[OpPut]; got != want {
			t.Fatalf("Attempts %d: %d tries, want %d", attempts, got, want)
		}
		if got := len(s.all()); got != want-1 {
			t.Fatalf("Attempts %d: %d sleeps, want %d", attempts, got, want-1)
		}
		if want > 1 && !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", want)) {
			t.Fatalf("error does not say it gave up: %v", err)
		}
	}
}

func TestRetryBackoffFullJitter(t *testing.T) {
	p := RetryPolicy{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	ceilings := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i, ceil := range ceilings {
		ceil *= time.Millisecond
		attempt := i + 1
		var lo, hi time.Duration = ceil, 0
		for range 2000 {
			d := p.Backoff(attempt)
			if d < 0 || d > ceil {
				t.Fatalf("Backoff(%d) = %v, outside [0, %v]", attempt, d, ceil)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter spreads over the whole range, not around a fixed delay.
		if lo > ceil/10 || hi < ceil*9/10 {
			t.Errorf("Backoff(%d) ranged over [%v, %v] in 2000 draws; want most of [0, %v]", attempt, lo, hi, ceil)
		}
	}
	// Huge attempt numbers must not overflow.
	if d := p.Backoff(200); d < 0 || d > p.Max {
		t.Fatalf("Backoff(200) = %v", d)
	}
	if d := (RetryPolicy{}).Backoff(1); d < 0 || d > 100*time.Millisecond {
		t.Fatalf("default Backoff(1) = %v, want within [0, 100ms]", d)
	}

	// And the sleeps WithRetry actually asks for respect the same bounds.
	r, f, s := newRetrying(t, RetryPolicy{Attempts: 7, Base: 10 * time.Millisecond, Max: 100 * time.Millisecond})
	f.FailNext(OpSize, 6, errFlaky)
	if err := r.Put(context.Background(), "k", nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Size(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	got := s.all()
	if len(got) != 6 {
		t.Fatalf("%d sleeps, want 6", len(got))
	}
	for i, d := range got {
		if ceil := ceilings[i] * time.Millisecond; d < 0 || d > ceil {
			t.Errorf("sleep %d = %v, outside [0, %v]", i+1, d, ceil)
		}
	}
}

func TestRetryRealSleepHonoursContext(t *testing.T) {
	f := NewFaulty(openT(t, "mem://"), 1)
	r := WithRetry(f, RetryPolicy{Attempts: 100, Base: time.Hour, Max: time.Hour}) // default Sleep
	f.SetErrorRate(OpGet, 1, errFlaky)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Get(ctx, "k")
	if !errors.Is(err, errFlaky) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want the injected error and the context's", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Get took %v after its context ended", el)
	}
}

func TestRetryDeadlineExceeded(t *testing.T) {
	// A per-request timeout inside the driver is retried while the
	// caller's context is live...
	r, f, _ := newRetrying(t, RetryPolicy{})
	ctx := context.Background()
	if err := r.Put(ctx, "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	f.FailNext(OpGet, 2, fmt.Errorf("read: %w", context.DeadlineExceeded))
	if _, err := r.Get(ctx, "k"); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if n := f.Counts()[OpGet]; n != 3 {
		t.Fatalf("%d tries, want 3", n)
	}
	// ...but not once the caller's own deadline has passed.
	dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	f.FailNext(OpGet, 2, fmt.Errorf("read: %w", context.DeadlineExceeded))
	if _, err := r.Get(dctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v", err)
	}
	if n := f.Counts()[OpGet]; n != 4 {
		t.Fatalf("%d tries in all, want 4 (no retry after the caller's deadline)", n)
	}
}

func TestRetryIfNotExistAfterLanded(t *testing.T) {
	ctx := context.Background()

	t.Run("OurBytesLanded", func(t *testing.T) {
		r, f, _ := newRetrying(t, RetryPolicy{})
		// The first try stores the object, then its reply is lost.
		f.FailNextAfter(OpPut, 1, errFlaky)
		if err := r.Put(ctx, "snapshots/s1", []byte("ours"), true); err != nil {
			t.Fatalf("Put = %v, want success (our earlier try landed)", err)
		}
		if c := f.Counts(); c[OpPut] != 2 || c[OpGet] != 1 {
			t.Fatalf("Counts = %v, want 2 puts and 1 read-back", c)
		}
	})

	t.Run("SomeoneElsesBytes", func(t *testing.T) {
		r, f, _ := newRetrying(t, RetryPolicy{})
		if err := f.Unwrap().Put(ctx, "gc/lease", []byte("theirs"), false); err != nil {
			t.Fatal(err)
		}
		f.FailNextAfter(OpPut, 1, errFlaky)
		err := r.Put(ctx, "gc/lease", []byte("ours"), true)
		if !errors.Is(err, ErrExists) {
			t.Fatalf("Put = %v, want ErrExists", err)
		}
		if c := f.Counts(); c[OpPut] != 2 || c[OpGet] != 1 {
			t.Fatalf("Counts = %v, want 2 puts and 1 read-back", c)
		}
	})

	t.Run("ExistsOnFirstTryIsNotVerified", func(t *testing.T) {
		r, f, _ := newRetrying(t, RetryPolicy{})
		if err := r.Put(ctx, "k", []byte("same"), true); err != nil {
			t.Fatal(err)
		}
		// Same bytes, but no earlier try of this call: plain ErrExists.
		if err := r.Put(ctx, "k", []byte("same"), true); !errors.Is(err, ErrExists) {
			t.Fatalf("Put = %v, want ErrExists", err)
		}
		if n := f.Counts()[OpGet]; n != 0 {
			t.Fatalf("%d read-backs, want 0", n)
		}
	})

	t.Run("FailedBeforeReachingStoreThenTakenByOther", func(t *testing.T) {
		// The first try never reached the store; meanwhile another writer
		// took the key with different bytes.
		r, f, _ := newRetrying(t, RetryPolicy{})
		f.FailNext(OpPut, 1, errFlaky)
		if err := f.Unwrap().Put(ctx, "k", []byte("theirs"), false); err != nil {
			t.Fatal(err)
		}
		if err := r.Put(ctx, "k", []byte("ours"), true); !errors.Is(err, ErrExists) {
			t.Fatalf("Put = %v, want ErrExists", err)
		}
	})

	t.Run("ReadBackFails", func(t *testing.T) {
		r, f, _ := newRetrying(t, RetryPolicy{Attempts: 2})
		f.FailNextAfter(OpPut, 1, errFlaky)
		f.FailNext(OpGet, 2, errFlaky)
		err := r.Put(ctx, "k", []byte("ours"), true)
		if err == nil || errors.Is(err, ErrExists) {
			t.Fatalf("Put = %v, want an error that is neither success nor ErrExists", err)
		}
	})
}

// cutList delivers the first n keys of each listing, then fails.
type cutList struct {
	Backend
	n     int
	cuts  int
	calls int
}

func (c *cutList) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	c.calls++
	i := 0
	return c.Backend.List(ctx, prefix, func(oi ObjectInfo) error {
		if c.cuts > 0 && i == c.n {
			c.cuts--
			return errFlaky
		}
		i++
		return fn(oi)
	})
}

func TestRetryListResumes(t *testing.T) {
	ctx := context.Background()
	mem := openT(t, "mem://")
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("p/%02d", i)
		want = append(want, k)
		if err := mem.Put(ctx, k, []byte{byte(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	cl := &cutList{Backend: mem, n: 4, cuts: 2}
	s := &sleeps{}
	r := WithRetry(cl, RetryPolicy{Sleep: s.sleep})
	var got []string
	if err := r.List(ctx, "p/", func(oi ObjectInfo) error { got = append(got, oi.Key); return nil }); err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List delivered %q, want each key once: %q", got, want)
	}
	if cl.calls != 3 {
		t.Fatalf("%d listings, want 3", cl.calls)
	}

	// The callback's own error is returned as is, never retried, even if it
	// looks transient.
	cl.calls = 0
	calls := 0
	err := r.List(ctx, "p/", func(ObjectInfo) error { calls++; return errFlaky })
	if err != errFlaky || calls != 1 || cl.calls != 1 {
		t.Fatalf("List = %v after %d callbacks and %d listings; want the callback's error after 1 and 1", err, calls, cl.calls)
	}
}

func TestRetryWithFaultyRandomErrors(t *testing.T) {
	// A store failing a third of all calls: with retries every operation
	// still completes, concurrently.
	ctx := context.Background()
	f := NewFaulty(openT(t, "mem://"), 42)
	for _, op := range []Op{OpPut, OpGet, OpGetRange, OpSize, OpList, OpDelete} {
		f.SetErrorRate(op, 0.33, errFlaky)
	}
	s := &sleeps{}
	r := WithRetry(f, RetryPolicy{Attempts: 30, Sleep: s.sleep})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				key := fmt.Sprintf("w%d/%d", w, i)
				data := []byte(key)
				if err := r.Put(ctx, key, data, true); err != nil {
					t.Error(err)
					return
				}
				if got, err := r.Get(ctx, key); err != nil || string(got) != key {
					t.Errorf("Get(%s) = %q, %v", key, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	if err := r.List(ctx, "", func(ObjectInfo) error { n++; return nil }); err != nil || n != 160 {
		t.Fatalf("List: %d objects, %v", n, err)
	}
	if len(s.all()) == 0 {
		t.Fatal("no retries happened")
	}
}
