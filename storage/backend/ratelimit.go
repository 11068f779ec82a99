package backend

import (
	"context"
	"fmt"

	xrate "golang.org/x/time/rate"
)

// listPage is how many keys one listing request returns on S3, GCS and
// Azure: a List waits for one request per page it goes through.
const listPage = 1000

// Waiter is what WithRateLimit waits on before each request: a
// *xrate.Limiter, or a fake in tests.
type Waiter interface {
	Wait(ctx context.Context) error
}

// NewRateLimit returns the limiter WithRateLimit takes: perSecond requests
// per second on average, bursts of up to burst (at least 1).
func NewRateLimit(perSecond float64, burst int) *xrate.Limiter {
	return xrate.NewLimiter(xrate.Limit(perSecond), max(burst, 1))
}

// WithRateLimit makes every request to b wait for w first: object stores
// bill and throttle per request (S3 answers 503 SlowDown past its rate),
// and an operator sharing a bucket or an API quota caps crayfish's share
// here. Put it under WithRetry, so each retry is a request that waits
// too. A wait cut short by ctx is the request's error; b is then not
// called.
func WithRateLimit(b Backend, w Waiter) Backend {
	return &limited{b: b, w: w}
}

type limited struct {
	b Backend
	w Waiter
}

func (l *limited) wait(ctx context.Context, op, key string) error {
	if err := l.w.Wait(ctx); err != nil {
		return fmt.Errorf("%s %q: waiting for the request rate limit: %w", op, key, err)
	}
	return nil
}

func (l *limited) Put(ctx context.Context, key string, data []byte, ifNotExist bool) error {
	if err := l.wait(ctx, "put", key); err != nil {
		return err
	}
	return l.b.Put(ctx, key, data, ifNotExist)
}

func (l *limited) Get(ctx context.Context, key string) ([]byte, error) {
	if err := l.wait(ctx, "get", key); err != nil {
		return nil, err
	}
	return l.b.Get(ctx, key)
}

func (l *limited) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := l.wait(ctx, "get", key); err != nil {
		return nil, err
	}
	return l.b.GetRange(ctx, key, offset, length)
}

func (l *limited) Size(ctx context.Context, key string) (int64, error) {
	if err := l.wait(ctx, "size", key); err != nil {
		return 0, err
	}
	return l.b.Size(ctx, key)
}

func (l *limited) Delete(ctx context.Context, key string) error {
	if err := l.wait(ctx, "delete", key); err != nil {
		return err
	}
	return l.b.Delete(ctx, key)
}

// List waits before the listing and again before every listPage keys it
// delivers beyond the first page.
func (l *limited) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := l.wait(ctx, "list", prefix); err != nil {
		return err
	}
	n := 0
	return l.b.List(ctx, prefix, func(o ObjectInfo) error {
		if n++; n > listPage && n%listPage == 1 {
			if err := l.wait(ctx, "list", prefix); err != nil {
				return err
			}
		}
		return fn(o)
	})
}

func (l *limited) Close() error { return l.b.Close() }
