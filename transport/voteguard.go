package transport

import (
	"github.com/hashicorp/raft"
)

// VoteGuard wraps a Raft transport so that the node refuses a vote
// (RequestVote and RequestPreVote are answered "not granted" without
// reaching Raft) unless allowed(candidate id) reports true.
//
// Why: hashicorp/raft grants votes from a node whose configuration is
// empty, and addresses servers by address, not id. A node whose disk was
// wiped and that comes back on its old address with a new id would vote
// with an empty log on behalf of the old member, and could elect a leader
// that lacks entries the old member had acknowledged. The node's store
// allows votes once its own id is in its configuration, or when the
// candidate's configuration names it (a cluster forming).
type VoteGuard struct {
	*raft.NetworkTransport
	allowed func(candidateID string) bool
	out     chan raft.RPC
}

// GuardVotes starts the guard; Raft must consume from the returned
// transport.
func GuardVotes(t *raft.NetworkTransport, allowed func(candidateID string) bool) *VoteGuard {
	g := &VoteGuard{NetworkTransport: t, allowed: allowed, out: make(chan raft.RPC)}
	go g.run()
	return g
}

// Consumer is the filtered RPC stream.
func (g *VoteGuard) Consumer() <-chan raft.RPC { return g.out }

func (g *VoteGuard) run() {
	in := g.NetworkTransport.Consumer()
	for rpc := range in {
		switch req := rpc.Command.(type) {
		case *raft.RequestVoteRequest:
			if !g.allowed(string(req.ID)) {
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax},
					Term: req.Term, Granted: false}, nil)
				continue
			}
		case *raft.RequestPreVoteRequest:
			if !g.allowed(string(req.ID)) {
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax},
					Term: req.Term, Granted: false}, nil)
				continue
			}
		}
		g.out <- rpc
	}
}
