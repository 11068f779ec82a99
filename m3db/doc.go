// Package m3db is the M3DB plugin of a crayfish node (docs/m3db.md).
//
// Backup: the placement, the namespace registry and configured extra etcd
// keys read at one etcd revision, and the node's complete and intact
// filesets (package m3db/fileset decides which) plus its commit logs,
// hard-linked into the snapshot directory — never copied, except the two
// commit logs M3 may still append to, copied up to their last whole
// chunk.
//
// Restore: a pure planner (plan.go) of five phases — stop and report the
// node's identity, make the data dir equal to the backup, one etcd
// transaction with the placement rewritten onto the nodes' identities,
// start and wait for bootstrap, read back — for a whole cluster onto the
// same or new identities, one node, or chosen namespaces.
//
// It owns the m3db_* configuration keys, the etcd reads and writes, the
// layout of the tree it hands to the node and how M3DB is stopped,
// started and checked. It imports the plugin seam, internal leaves and
// its own subpackages only: it must not reach the repository, the Raft
// state or the operation engine. Its subpackages: fileset (which
// filesets are complete and intact; series ids; commit log framing), m3pb
// (M3's protobufs, our own .proto files) and placement (the pure rewrite
// of a placement onto new identities).
package m3db
