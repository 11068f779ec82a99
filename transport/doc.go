// Package transport owns how crayfish nodes reach each other: the Raft
// stream layers (plain TCP, and TLS with optional mutual authentication),
// the TLS settings read from files (with certificate reload), and the
// source address of outgoing connections. Subpackages: gossip
// (membership) and forward (proxying a request to the leader). It must
// not know what an operation or a repository is.
package transport
