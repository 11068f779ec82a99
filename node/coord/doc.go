// Package coord is the leader's code: it starts operations (checking
// and planning requests, restore plans from the backup's plugin), and
// its Engine drives the active operation step by step while this node
// leads, recording every step in the replicated FSM, so a new leader
// resumes what the old one left. Node steps go through wire.Worker (this
// node's job table or a RemoteWorker over the internal API), each with
// the operation id and the leader's fencing epoch; cluster steps (lock,
// dedup, manifest, delete, forget, gc, verify, repair) it runs itself
// against the repository.
//
// Beside the operations, while this node leads (Engine.WhileLeading):
// the scheduler fires each schedule's slots (node/schedule decides when;
// the slot's operation id derives from schedule and slot, and the slot
// is recorded after its operation started, so a new leader fires it at
// most once more and finds it there), and the Notifier POSTs each
// finished operation's completion to its webhooks and marks it
// delivered in the log.
//
// It depends on a Log (apply, barrier, leadership, the FSM), never on the
// Raft store itself, so its tests run on an in-memory log with scripted
// failures (testdata/engine). It must not touch a node's disk (no
// node/tree, node/hashcache), import node/worker, or compute times inside
// the FSM: it stamps them into commands.
package coord
