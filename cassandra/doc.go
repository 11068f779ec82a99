// Package cassandra is the Apache Cassandra plugin of a crayfish node: it
// knows how to take a consistent snapshot of the local Cassandra node
// (nodetool snapshot, its schema and token ring through CQL) and how to put
// a backed-up node back (full-cluster restore with the backed-up tokens,
// single-node restore keeping the host identity, table restore into a
// running cluster with nodetool import), and how to put a whole cluster
// back as it was at a point in time: its commit-log segments, archived by
// Cassandra into a spool (ArchiveSegment) and carried by every backup, are
// replayed by Cassandra up to that time (docs/cassandra-pitr.md).
//
// It owns everything Cassandra-specific: CQL sessions (gocql), nodetool
// and start/stop commands, the on-disk layout of data directories and
// snapshots, the layout of the tree it hands to the node for upload
// (docs/cassandra.md), the schema with its internals (dropped columns)
// and the checks a restore makes before it changes anything (staged
// files, schema fit) and after it loads SSTables (Cassandra's log). It must not reach into the repository format, the
// Raft state or the operation engine: the node calls it with an operation
// id and a directory, and the node alone fences, uploads and downloads.
package cassandra
