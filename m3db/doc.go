// Package m3db will own the M3DB plugin: etcd placement and namespace
// capture and restore. It is empty until its issue lands; it must not reach
// into the Raft state.
package m3db
