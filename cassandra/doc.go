// Package cassandra will own the Apache Cassandra plugin: schema and token
// capture, nodetool snapshots, and full and single-node restores. It is
// empty until its issue lands; it must not reach into the Raft state.
package cassandra
