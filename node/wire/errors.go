package wire

import (
	"errors"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// The error kinds of the node packages, in one place: the API edge
// (node/http.go) translates each to a status and a code once.

// ErrStaleEpoch: a node-side call carried a fencing epoch older than one
// the node already accepted, so it comes from a deposed coordinator.
var ErrStaleEpoch = errors.New("stale fencing epoch: a newer coordinator has taken over")

// ErrDamaged marks a restore step that met chunks the repository holds
// missing or corrupt: it restored every other file and failed for good,
// its result naming the damaged files (RestoreResult.Damaged).
var ErrDamaged = errors.New("damaged content in the repository")

// ErrOtherRepository: a node was asked to work for a cluster whose
// repository is not its own.
var ErrOtherRepository = errors.New("node uses another repository")

// ErrNodeUnreachable: a node did not answer within node_timeout.
var ErrNodeUnreachable = errors.New("node unreachable")

// ErrNoSpace: the restore target's filesystem cannot hold what a restore
// would write. Nothing has been written when it is returned.
var ErrNoSpace = errors.New("not enough free space")

// ErrUnsafeTarget marks a restore target refused because writing there
// could destroy what the restore was not asked to replace: the agent's
// own state, a repository, or the system. Errors carrying it also carry
// ErrBadRequest (a 400: nothing was written).
var ErrUnsafeTarget = errors.New("unsafe restore target")

// Errors of the replicated store, translated from raft's once here.
var (
	// ErrNotLeader: this node cannot accept writes; nothing happened.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrUnknownOutcome: the command may or may not have been committed
	// (leadership was lost while it was in flight). Retry with the same
	// operation id; the FSM deduplicates.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost while committing")
)

// ErrUnknownNode: no member of that id is known.
var ErrUnknownNode = errors.New("unknown node")

// ErrBodyTooLarge: a request body over its endpoint's limit (413).
var ErrBodyTooLarge = errors.New("request body too large")

// ErrBadRequest marks invalid input from a client; a plugin's planner
// marks its refusals with the same error.
var ErrBadRequest = plugin.ErrBadRequest

// Permanent marks a failure that retrying cannot fix (a missing root,
// a hostile manifest): the coordinator fails the step at once. It is the
// plugins' mark (plugin.Permanent), so a plugin's marked error and the
// node's are one kind.
func Permanent(err error) error { return plugin.Permanent(err) }

// IsPermanent reports whether err was marked as not worth retrying; a
// stale epoch is never worth retrying either.
func IsPermanent(err error) bool {
	return plugin.IsPermanent(err) || errors.Is(err, ErrStaleEpoch)
}
