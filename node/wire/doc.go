// Package wire holds what the coordinator (node/coord) and the node
// worker (node/worker) share: the names of steps, the reference every
// side effect carries (StepRef), the requests and results of node steps
// as they cross the internal API and the Raft log, the Worker interface
// the coordinator calls them through, and the error kinds of the node
// packages (errors.go), translated to HTTP once, at the API edge.
//
// It must stay a leaf of node: plain types and marks, no behaviour that
// reaches a disk, the network or the Raft log.
package wire
