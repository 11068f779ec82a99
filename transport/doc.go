// Package transport owns how crayfish nodes reach each other: the Raft
// stream layer today, node-to-node RPC and gossip wiring as the cluster
// grows. It must not know what an operation or a repository is.
package transport
