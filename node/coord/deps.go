package coord

import (
	"context"
	"net/http"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/storage"
)

// Log is what the coordinator needs of the replicated log: commit a
// command (its FSM response), wait until everything committed is
// applied, leadership and the state machine. node.Store is the real one;
// tests give a fake that applies commands in memory.
type Log interface {
	Apply(ctx context.Context, cmd fsm.Command) (fsm.Response, error)
	Barrier(ctx context.Context) error
	IsLeader() bool
	// LeaderCh reports leadership changes (true: this node leads).
	LeaderCh() <-chan bool
	FSM() *fsm.Machine
}

// Metrics receives what the coordinator times; nil times nothing.
// Operation and step counts come from the replicated state (fsm.Totals),
// the same on every node.
type Metrics interface {
	StepDone(step string, d time.Duration, err error)
}

type nopMetrics struct{}

func (nopMetrics) StepDone(string, time.Duration, error) {}

// Config is what the coordinator needs of the agent's configuration.
type Config struct {
	NodeID string
	// Plugin names the plugin of the backups this cluster takes (the
	// manifest records it).
	Plugin string
	// StepAttempts and StepRetryDelay: a failing step is attempted this
	// often, the delay doubling.
	StepAttempts   int
	StepRetryDelay time.Duration
	// LockWait bounds the wait for a repository lock another holds.
	LockWait time.Duration
	// Retention is the configured policy of cleanups that name none.
	Retention storage.RetentionPolicy
	// DedupPartitionChunks bounds the chunk references the dedup step
	// gathers for one partition (0: DefaultDedupPartitionChunks).
	DedupPartitionChunks int
}

// Planners are the registered plugins' drivers: a restore is planned by
// the driver of the plugin that took the backup.
type Planners interface {
	Driver(name string) (plugin.Driver, bool)
	Names() []string
}

// Doer sends a request to another node (with the cluster's credentials).
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}
