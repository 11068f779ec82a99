package tree

import (
	"context"
	"iter"
	"slices"
	"sync"
)

// runPool calls fn for every item using n goroutines. The first error
// cancels the context handed to the other calls and is the one returned, so
// a failing worker is reported rather than the cancellations it caused. If
// the parent context ends first, its error is returned.
func runPool[T any](ctx context.Context, n int, items []T, fn func(context.Context, T) error) error {
	return runPoolSeq(ctx, min(n, len(items)), slices.Values(items), fn)
}

// runPoolSeq is runPool over an iterator, which runs in the calling
// goroutine and is stopped early once the pool's context ends (the first
// error or the parent's cancellation). It lets the caller decide lazily,
// in order, which items need a worker at all.
func runPoolSeq[T any](ctx context.Context, n int, items iter.Seq[T], fn func(context.Context, T) error) error {
	if n < 1 {
		n = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	work := make(chan T)
	for range n {
		wg.Go(func() {
			for item := range work {
				if ctx.Err() != nil {
					continue // drain quickly after a failure
				}
				if err := fn(ctx, item); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		})
	}
feed:
	for item := range items {
		select {
		case work <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err() // non-nil only if the parent was cancelled
}
