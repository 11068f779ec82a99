// Package worker is every node's code: the LocalWorker performs the steps
// a leader asks of this node (snapshot through the node's plugin, upload
// of what the repository lacks, restore into a guarded target, the root
// or the staging dir for the plugin, release), the Jobs table runs them
// so a new leader re-attaches to a step in flight, and the Fence refuses
// calls of a deposed leader's epoch, durably. Between operations it
// ships the closed log files of a plugin that keeps them (ShipLogs, log
// archives: no leader involved, a shared repository lock of its own).
//
// It owns the node's data dir (snapshots, staged restores, the fence
// file, the hash cache, logship.json) and the checks before anything is written (the
// target guard, free space, damage accounting). It must not import the
// coordinator (node/coord) or reach the Raft log; what it shares with the
// leader is node/wire.
package worker
