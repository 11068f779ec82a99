package backend

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/wait"
)

// Op names a Backend operation for Faulty.
type Op int

// The operations Faulty can script faults for.
const (
	OpPut Op = iota + 1
	OpGet
	OpGetRange
	OpList
	OpDelete
	OpSize
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpGetRange:
		return "getrange"
	case OpList:
		return "list"
	case OpDelete:
		return "delete"
	case OpSize:
		return "size"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Faulty is a Backend that misbehaves on demand. It wraps a real Backend
// and injects errors (scripted or at a seeded random rate, before or after
// the call reaches the backend), latency, and reads that silently return a
// truncated or corrupted copy of the data.
//
// It is the seam tests use to prove that a backup completes despite a
// flaky store, or fails clearly: retries (WithRetry) must absorb transient
// errors, and the layers above must detect lying reads by hashes and
// lengths, since Faulty's truncated and corrupted reads report no error.
//
// All randomness comes from the seed, so a single-goroutine test replays
// exactly; with concurrent callers the sequence depends on call order. A
// Faulty is safe for concurrent use; its settings may change while calls
// are in flight.
type Faulty struct {
	b Backend

	mu        sync.Mutex
	rng       *rand.Rand
	next      map[Op][]scripted
	rates     map[Op]rate
	latency   map[Op]time.Duration
	truncateP float64
	corruptP  float64
	counts    map[Op]int
}

type scripted struct {
	err   error
	after bool // the call reaches the backend first
}

type rate struct {
	p   float64
	err error
}

// NewFaulty wraps b; seed drives every random choice. With nothing
// scripted it behaves exactly like b.
func NewFaulty(b Backend, seed int64) *Faulty {
	return &Faulty{
		b:       b,
		rng:     rand.New(rand.NewSource(seed)),
		next:    map[Op][]scripted{},
		rates:   map[Op]rate{},
		latency: map[Op]time.Duration{},
		counts:  map[Op]int{},
	}
}

// FailNext makes the next n calls of op fail with err without reaching the
// backend. Calls queue: FailNext twice fails n1+n2 calls, in order.
func (f *Faulty) FailNext(op Op, n int, err error) {
	f.script(op, n, scripted{err: err})
}

// FailNextAfter makes the next n calls of op reach the backend and then
// fail with err, whatever the backend did: a reply lost after the store
// acted (a Put that landed, a Delete that happened). Queued together with
// FailNext, in call order.
func (f *Faulty) FailNextAfter(op Op, n int, err error) {
	f.script(op, n, scripted{err: err, after: true})
}

func (f *Faulty) script(op Op, n int, s scripted) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.next[op] = append(f.next[op], s)
	}
}

// SetErrorRate makes each call of op fail with err, without reaching the
// backend, with probability p (0 turns it off). Scripted failures come
// first.
func (f *Faulty) SetErrorRate(op Op, p float64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p <= 0 {
		delete(f.rates, op)
		return
	}
	f.rates[op] = rate{p: p, err: err}
}

// SetLatency delays each call of op by d before anything else happens (0
// turns it off). A call whose context ends while waiting fails with the
// context's error.
func (f *Faulty) SetLatency(op Op, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		delete(f.latency, op)
		return
	}
	f.latency[op] = d
}

// TruncateReads makes each successful Get and GetRange of a non-empty
// object return, with probability p, a strict prefix of the data (possibly
// empty) and no error: a lying server.
func (f *Faulty) TruncateReads(p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.truncateP = p
}

// CorruptReads makes each successful Get and GetRange of a non-empty object
// return, with probability p, the data with one byte changed and no error.
// It applies after TruncateReads.
func (f *Faulty) CorruptReads(p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corruptP = p
}

// Heal drops every scripted fault, rate, latency and read distortion; the
// counts stay.
func (f *Faulty) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.next)
	clear(f.rates)
	clear(f.latency)
	f.truncateP, f.corruptP = 0, 0
}

// Counts returns how many calls of each op Faulty has seen, failed ones
// included.
func (f *Faulty) Counts() map[Op]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[Op]int, len(f.counts))
	for op, n := range f.counts {
		m[op] = n
	}
	return m
}

// Unwrap returns the wrapped Backend.
func (f *Faulty) Unwrap() Backend { return f.b }

// before counts the call, waits the latency and decides its fault: an error
// to return now, or one to return after the backend call.
func (f *Faulty) before(ctx context.Context, op Op, key string) (now, after error) {
	f.mu.Lock()
	f.counts[op]++
	d := f.latency[op]
	f.mu.Unlock()
	if d > 0 {
		if err := wait.Sleep(ctx, d); err != nil {
			return fmt.Errorf("%s %q: %w", op, key, err), nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.next[op]; len(q) > 0 {
		s := q[0]
		f.next[op] = q[1:]
		if s.after {
			return nil, s.err
		}
		return s.err, nil
	}
	if r, ok := f.rates[op]; ok && f.rng.Float64() < r.p {
		return r.err, nil
	}
	return nil, nil
}

// distort applies TruncateReads and CorruptReads to a successful read,
// always on a copy.
func (f *Faulty) distort(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := data
	if f.truncateP > 0 && f.rng.Float64() < f.truncateP {
		out = append([]byte(nil), data[:f.rng.Intn(len(data))]...)
	}
	if len(out) > 0 && f.corruptP > 0 && f.rng.Float64() < f.corruptP {
		if &out[0] == &data[0] {
			out = append([]byte(nil), out...)
		}
		out[f.rng.Intn(len(out))] ^= byte(1 + f.rng.Intn(255))
	}
	return out
}

func (f *Faulty) Put(ctx context.Context, key string, data []byte, ifNotExist bool) error {
	now, after := f.before(ctx, OpPut, key)
	if now != nil {
		return now
	}
	err := f.b.Put(ctx, key, data, ifNotExist)
	if after != nil {
		return after
	}
	return err
}

func (f *Faulty) Get(ctx context.Context, key string) ([]byte, error) {
	now, after := f.before(ctx, OpGet, key)
	if now != nil {
		return nil, now
	}
	data, err := f.b.Get(ctx, key)
	if after != nil {
		return nil, after
	}
	if err != nil {
		return data, err
	}
	return f.distort(data), nil
}

func (f *Faulty) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	now, after := f.before(ctx, OpGetRange, key)
	if now != nil {
		return nil, now
	}
	data, err := f.b.GetRange(ctx, key, offset, length)
	if after != nil {
		return nil, after
	}
	if err != nil {
		return data, err
	}
	return f.distort(data), nil
}

func (f *Faulty) Size(ctx context.Context, key string) (int64, error) {
	now, after := f.before(ctx, OpSize, key)
	if now != nil {
		return 0, now
	}
	size, err := f.b.Size(ctx, key)
	if after != nil {
		return 0, after
	}
	return size, err
}

func (f *Faulty) Delete(ctx context.Context, key string) error {
	now, after := f.before(ctx, OpDelete, key)
	if now != nil {
		return now
	}
	err := f.b.Delete(ctx, key)
	if after != nil {
		return after
	}
	return err
}

// List: an error injected "after" comes once the whole listing has been
// delivered to fn.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	now, after := f.before(ctx, OpList, prefix)
	if now != nil {
		return now
	}
	err := f.b.List(ctx, prefix, fn)
	if after != nil && err == nil {
		return after
	}
	return err
}

// Close closes the wrapped Backend.
func (f *Faulty) Close() error { return f.b.Close() }

var _ Backend = (*Faulty)(nil)
