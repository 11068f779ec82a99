// Package node is the crayfish agent: its configuration, the Raft store
// and the replicated FSM it drives, cluster membership (gossip → Raft),
// the coordinator engine that runs operations on the leader, the node
// worker and the jobs it runs for coordinators under fencing epochs, and
// the HTTP API (public /v1 and node-to-node /internal/v1).
//
// It owns the rules of operations across nodes: plans and their phases,
// fencing, dedup assignment, restore mapping. It must not reach into the
// repository format (that is package storage) or into how a tree is read
// and written on disk (package node/tree); the FSM it drives stays pure
// (package fsm): times and epochs are stamped here, never computed there.
package node
