package worker

import "sync"

// opGate serialises what a node does with one operation's snapshot: a
// release waits for a snapshot or upload of the same operation still
// running (its coordinator stopped waiting for it when a sibling failed),
// so the release removes what the snapshot made instead of racing it and
// leaving hard links behind.
type opGate struct {
	mu    sync.Mutex
	locks map[string]*opLock
}

type opLock struct {
	sync.Mutex
	refs int
}

// lock takes op's lock and returns its release.
func (g *opGate) lock(op string) (unlock func()) {
	g.mu.Lock()
	if g.locks == nil {
		g.locks = map[string]*opLock{}
	}
	l := g.locks[op]
	if l == nil {
		l = &opLock{}
		g.locks[op] = l
	}
	l.refs++
	g.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		g.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(g.locks, op)
		}
		g.mu.Unlock()
	}
}
