// Package gossip owns cluster membership by gossip (hashicorp/memberlist):
// who is in the cluster, how to reach each member (its Raft and HTTP
// addresses travel as gossip metadata) and whether it is alive, suspect,
// dead or gone. It heals partitions itself: memberlist alone never
// re-merges two sides that declared each other dead, so a loop rejoins
// every known peer that is not alive.
//
// It must not know about Raft, operations or repositories: the node
// package turns membership into Raft configuration changes.
package gossip
