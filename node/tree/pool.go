package tree

import (
	"context"
	"sync"
)

// runPool calls fn for every item using n goroutines. The first error
// cancels the context handed to the other calls and is the one returned, so
// a failing worker is reported rather than the cancellations it caused. If
// the parent context ends first, its error is returned.
func runPool[T any](ctx context.Context, n int, items []T, fn func(context.Context, T) error) error {
	if n < 1 {
		n = 1
	}
	n = min(n, len(items))
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
	for _, item := range items {
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
