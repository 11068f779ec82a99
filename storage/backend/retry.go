package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/crayfish-backup/crayfish/internal/wait"
)

// ErrUnavailable marks the error of a call WithRetry gave up on: every try
// failed transiently (a 5xx, a 503 SlowDown or a 429, a reset connection,
// ErrStalled), so the store may well answer later and the operation can
// be run again. The last try's error stays in the chain.
var ErrUnavailable = errors.New("backend: the object store is unavailable")

// RetryPolicy configures WithRetry. Zero fields take the defaults.
type RetryPolicy struct {
	// Attempts is the number of tries per call, the first included
	// (default 5).
	Attempts int
	// Base is the backoff ceiling before the second try (default 100ms); it
	// doubles per try up to Max (default 5s). Each sleep is uniformly random
	// in [0, ceiling] ("full jitter").
	Base, Max time.Duration
	// Sleep waits d or until ctx is done (returning its error). Tests replace
	// it to run without waiting and to observe the backoff.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Base <= 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Second
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	if p.Sleep == nil {
		p.Sleep = wait.Sleep
	}
	return p
}

// Backoff returns the sleep before try number attempt+1 (attempt counts
// from 1, the try that just failed): uniform in [0, min(Max, Base·2^(attempt-1))].
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	p = p.withDefaults()
	ceiling := p.Max
	if shift := attempt - 1; shift < 62 && p.Base<<shift > 0 && p.Base<<shift < p.Max {
		ceiling = p.Base << shift
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// IsTransient reports whether err is worth retrying: it is not ErrNotFound,
// ErrExists, ErrInvalidKey, a short object from GetRange, a context
// cancellation, or a permanent client error (HTTP 4xx other than 408 and
// 429, permission denied), and its gocloud code is Unknown, Internal,
// DeadlineExceeded or ResourceExhausted. gocloud has no Unavailable code:
// drivers report 5xx, 503 and connection failures as Unknown. (A
// DeadlineExceeded is only retried while the caller's context is live;
// WithRetry checks that.)
func IsTransient(err error) bool {
	if err == nil ||
		errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrInvalidKey) ||
		errors.Is(err, errBadRange) || errors.Is(err, context.Canceled) || errors.Is(err, fs.ErrPermission) ||
		// file://: a key that collides with a directory of other keys, or
		// runs through an existing object ("a" and "a/b").
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, fs.ErrExist) {
		return false
	}
	var short *shortObjectError
	if errors.As(err, &short) {
		return false
	}
	var perm permanentError
	if errors.As(err, &perm) {
		return false
	}
	switch gcerrors.Code(err) {
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.DeadlineExceeded, gcerrors.ResourceExhausted:
	default:
		return false
	}
	// Most drivers map only a few HTTP statuses to codes and leave the rest
	// Unknown: a 400 would otherwise look as transient as a 503.
	if status, ok := httpStatus(err); ok && status >= 400 && status < 500 &&
		status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
		return false
	}
	return true
}

// httpStatus finds the HTTP status of a cloud SDK error in err's chain.
func httpStatus(err error) (int, bool) {
	var withMethod interface{ HTTPStatusCode() int } // AWS (smithy-go)
	if errors.As(err, &withMethod) {
		return withMethod.HTTPStatusCode(), true
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code, true
	}
	var aerr *azcore.ResponseError
	if errors.As(err, &aerr) {
		return aerr.StatusCode, true
	}
	return 0, false
}

// permanentError marks an error WithRetry must return at once (a List
// callback's error).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// WithRetry returns b with each call retried on transient errors (see
// IsTransient) with exponential backoff and full jitter, up to p.Attempts
// tries; when they run out the error wraps ErrUnavailable. It stops early
// when ctx is done. On s3:// a try is one HTTP request (the SDK's own
// retries are off), so p.Attempts bounds the requests of a call.
//
// Put is retried as a whole: the keys above are content addressed, so
// writing the same bytes twice is harmless. A Put with ifNotExist whose
// earlier try failed in a way that may have stored the object, and whose
// retry then finds the key taken, reads the object back: equal bytes mean
// the earlier try landed (success); different bytes give ErrExists.
//
// List resumes after the last key it delivered (keys come in ascending
// order), so fn never sees a key twice; fn's own error is never retried.
func WithRetry(b Backend, p RetryPolicy) Backend {
	return &retrying{b: b, p: p.withDefaults()}
}

type retrying struct {
	b Backend
	p RetryPolicy
}

// do runs f until it succeeds, fails permanently, tries run out or ctx is
// done, and returns f's last error (annotated when it gave up).
func (r *retrying) do(ctx context.Context, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !IsTransient(err) {
			return err
		}
		if ctx.Err() != nil {
			return err // includes a DeadlineExceeded of the caller's context
		}
		if attempt >= r.p.Attempts {
			return fmt.Errorf("%w (gave up after %d attempts: %w)", err, attempt, ErrUnavailable)
		}
		if serr := r.p.Sleep(ctx, r.p.Backoff(attempt)); serr != nil {
			return fmt.Errorf("%w (retry abandoned: %w)", err, serr)
		}
	}
}

func (r *retrying) Put(ctx context.Context, key string, data []byte, ifNotExist bool) error {
	mayHaveLanded := false
	err := r.do(ctx, func() error {
		err := r.b.Put(ctx, key, data, ifNotExist)
		if IsTransient(err) {
			mayHaveLanded = true
		}
		return err
	})
	if !ifNotExist || !mayHaveLanded || !errors.Is(err, ErrExists) {
		return err
	}
	// An earlier try may have stored our bytes before its reply was lost.
	stored, gerr := r.Get(ctx, key)
	if gerr != nil {
		// Whether our bytes landed is unknown: not ErrExists, not success.
		return fmt.Errorf("put %q: key exists after an earlier failed try; reading it back: %v", key, gerr)
	}
	if bytes.Equal(stored, data) {
		return nil
	}
	return fmt.Errorf("%w (the stored object differs from ours)", err)
}

func (r *retrying) Get(ctx context.Context, key string) (data []byte, err error) {
	err = r.do(ctx, func() error {
		data, err = r.b.Get(ctx, key)
		return err
	})
	return data, err
}

func (r *retrying) GetRange(ctx context.Context, key string, offset, length int64) (data []byte, err error) {
	err = r.do(ctx, func() error {
		data, err = r.b.GetRange(ctx, key, offset, length)
		return err
	})
	return data, err
}

func (r *retrying) Size(ctx context.Context, key string) (size int64, err error) {
	err = r.do(ctx, func() error {
		size, err = r.b.Size(ctx, key)
		return err
	})
	return size, err
}

func (r *retrying) Delete(ctx context.Context, key string) error {
	return r.do(ctx, func() error { return r.b.Delete(ctx, key) })
}

func (r *retrying) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var (
		last      string
		delivered bool
		fnErr     error
	)
	err := r.do(ctx, func() error {
		return r.b.List(ctx, prefix, func(oi ObjectInfo) error {
			if delivered && oi.Key <= last {
				return nil // seen before a retry
			}
			if err := fn(oi); err != nil {
				fnErr = err
				return permanentError{err}
			}
			last, delivered = oi.Key, true
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

func (r *retrying) Close() error { return r.b.Close() }
