package coord

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// memLog is the coordinator's log in memory: commands go straight to an
// FSM machine, as Raft would apply them on a one-node cluster, with
// failures scripted by command type. No sockets, no timers.
type memLog struct {
	mu       sync.Mutex
	machine  *fsm.Machine
	index    uint64
	leader   bool
	leaderCh chan bool
	// fail, when set, is asked before each command; a non-nil error is
	// returned instead of applying it (lost leadership, unknown outcome).
	fail func(cmd fsm.Command) error
	// applied counts the commands applied by type.
	applied map[fsm.CommandType]int
	// maxEntry is the largest entry applied, in bytes.
	maxEntry int
}

func newMemLog() *memLog {
	return &memLog{machine: fsm.NewMachine(), leader: true, leaderCh: make(chan bool, 16), applied: map[fsm.CommandType]int{}}
}

func (l *memLog) Apply(_ context.Context, cmd fsm.Command) (fsm.Response, error) {
	l.mu.Lock()
	fail := l.fail
	leader := l.leader
	l.mu.Unlock()
	if !leader {
		return fsm.Response{}, wire.ErrNotLeader
	}
	if fail != nil {
		if err := fail(cmd); err != nil {
			return fsm.Response{}, err
		}
	}
	b, err := cmd.Encode()
	if err != nil {
		return fsm.Response{}, err
	}
	l.mu.Lock()
	l.maxEntry = max(l.maxEntry, len(b))
	l.index++
	idx := l.index
	l.applied[cmd.Type]++
	l.mu.Unlock()
	resp, ok := l.machine.Apply(&raft.Log{Index: idx, Data: b}).(fsm.Response)
	if !ok {
		return fsm.Response{}, errors.New("unexpected fsm response")
	}
	return resp, nil
}

func (l *memLog) Barrier(context.Context) error { return nil }

// largestEntry is the size of the largest entry applied so far.
func (l *memLog) largestEntry() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxEntry
}

func (l *memLog) IsLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader
}

func (l *memLog) LeaderCh() <-chan bool { return l.leaderCh }

func (l *memLog) FSM() *fsm.Machine { return l.machine }

// setLeader changes leadership and tells the engine, as Raft would.
func (l *memLog) setLeader(v bool) {
	l.mu.Lock()
	l.leader = v
	l.mu.Unlock()
	l.leaderCh <- v
}

func (l *memLog) count(t fsm.CommandType) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied[t]
}
