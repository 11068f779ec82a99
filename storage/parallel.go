package storage

import (
	"context"
	"sync"
)

// parallelEach calls fn for each item from at most n goroutines and stops
// handing out items once ctx ends. fn does its own locking.
func parallelEach[T any](ctx context.Context, n int, items []T, fn func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range min(n, max(len(items), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
}
