package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// countingWaiter counts waits; with block set, Wait waits for ctx.
type countingWaiter struct {
	mu    sync.Mutex
	n     int
	block bool
}

func (w *countingWaiter) Wait(ctx context.Context) error {
	w.mu.Lock()
	w.n++
	block := w.block
	w.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return ctx.Err()
}

func (w *countingWaiter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Every request waits once (a listing once per page of keys), the limited
// backend still passes the conformance suite, and a wait cut short by the
// context fails the request without reaching the store.
func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	w := &countingWaiter{}
	testBackend(t, WithRateLimit(openT(t, "mem://"), w))

	raw := openT(t, "mem://")
	b := WithRateLimit(raw, w)
	before := w.count()
	mustPut(t, ctx, b, "a/1", []byte("x"))
	if _, err := b.Get(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRange(ctx, "a/1", 0, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Size(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if got := w.count() - before; got != 5 {
		t.Errorf("5 requests waited %d times", got)
	}

	for i := range 2500 {
		mustPut(t, ctx, raw, fmt.Sprintf("l/%05d", i), []byte("x"))
	}
	before = w.count()
	listed := 0
	if err := b.List(ctx, "l/", func(ObjectInfo) error { listed++; return nil }); err != nil || listed != 2500 {
		t.Fatalf("listed %d: %v", listed, err)
	}
	if got := w.count() - before; got != 3 {
		t.Errorf("a listing of 2,500 keys waited %d times, want 3 (one per page of %d)", got, listPage)
	}

	w.mu.Lock()
	w.block = true
	w.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Put(cctx, "b/1", []byte("y"), false); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with the limit never granted: %v", err)
	}
	if _, err := raw.Get(ctx, "b/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the put reached the store: %v", err)
	}
}
