package pool

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEachCallsEveryItemOnce(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []int
	)
	items := make([]int, 500)
	for i := range items {
		items[i] = i
	}
	err := Each(context.Background(), 4, slices.Values(items), func(_ context.Context, i int) error {
		mu.Lock()
		seen = append(seen, i)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, items) {
		t.Fatalf("saw %d items, want each of %d once", len(seen), len(items))
	}
}

func TestEachBoundsConcurrency(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 3} {
		var cur, peak atomic.Int64
		err := Each(context.Background(), n, slices.Values(make([]int, 60)), func(context.Context, int) error {
			c := cur.Add(1)
			for {
				p := peak.Load()
				if c <= p || peak.CompareAndSwap(p, c) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			cur.Add(-1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(max(n, 1)); peak.Load() > want {
			t.Errorf("n=%d: %d calls at once, want at most %d", n, peak.Load(), want)
		}
	}
}

func TestEachFirstErrorWins(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int64
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	err := Each(context.Background(), 4, slices.Values(items), func(ctx context.Context, i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		select {
		case <-ctx.Done():
			return ctx.Err() // the cancellation boom caused: not reported
		case <-time.After(time.Millisecond):
			return nil
		}
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if calls.Load() > 100 {
		t.Errorf("%d calls after the failure: work still handed out", calls.Load())
	}
}

func TestEachEmpty(t *testing.T) {
	err := Each(context.Background(), 4, slices.Values([]int(nil)), func(context.Context, int) error {
		return errors.New("called")
	})
	if err != nil {
		t.Fatalf("empty: %v", err)
	}
}

func TestEachParentCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var pulled atomic.Int64
	items := func(yield func(int) bool) {
		for i := range 1000 {
			pulled.Add(1)
			if i == 5 {
				cancel()
			}
			if !yield(i) {
				return
			}
		}
	}
	err := Each(ctx, 2, items, func(context.Context, int) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if pulled.Load() > 10 {
		t.Errorf("iterator pulled %d items after the parent ended", pulled.Load())
	}
}

func TestIndices(t *testing.T) {
	if got := slices.Collect(Indices(4)); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("Indices(4) = %v", got)
	}
	if got := slices.Collect(Indices(0)); len(got) != 0 {
		t.Fatalf("Indices(0) = %v", got)
	}
	for i := range Indices(10) {
		if i == 2 {
			break // stopping early must not panic
		}
	}
}
