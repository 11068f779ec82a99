// Package m3db is the M3DB plugin of a crayfish node (issue 14, in
// progress): what a backup of one m3dbnode takes — the placement, the
// namespace registry and configured extra etcd keys read at one etcd
// revision, and the node's complete and intact filesets (package
// m3db/fileset decides which) plus its commit logs — hard-linked into the
// snapshot directory, never copied, except the active commit log, copied
// up to its length at the snapshot.
//
// It owns the m3db_* configuration keys, the etcd reads and the layout of
// the tree it hands to the node (docs/m3db.md once restores land). It
// imports the plugin seam and its own subpackages only: it must not reach
// the repository, the Raft state or the operation engine. Its
// subpackages: fileset (which filesets are complete and intact), m3pb
// (M3's protobufs, our own .proto files) and placement (the pure rewrite
// of a placement onto new identities). Restores are not there yet, so
// cmd/crayfish does not register it.
package m3db
