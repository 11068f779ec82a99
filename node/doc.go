// Package node is the crayfish agent's root: its configuration (and the
// configuration keys of every registered plugin, Config.Fields), the Raft
// store the coordinator's log runs on, cluster membership (gossip →
// Raft), the HTTP API (public /v1 and node-to-node /internal/v1, with the
// one translation of errors to statuses) and the wiring of the parts:
// NewAgent builds the leader's engine (node/coord), this node's worker
// and job table (node/worker) and the plugins cmd/crayfish registered.
//
// It owns wiring, transport of requests and the Raft log. It must not
// decide what an operation does (node/coord), touch the tree on disk
// (node/worker, node/tree), know a database (plugins reach it only
// through node/plugin, and it imports none: test/arch checks), or reach
// into the repository format (storage).
package node
