package transport

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestVoteGuardRefusesUntilAdmitted sends real RequestVote and
// RequestPreVote RPCs over TCP to a guarded transport.
func TestVoteGuardRefusesUntilAdmitted(t *testing.T) {
	server, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	var admitted atomic.Bool
	g := GuardVotes(server, func(candidate string) bool {
		if candidate != "candidate" {
			t.Errorf("guard asked about candidate %q", candidate)
		}
		return admitted.Load()
	})
	client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	addr := server.LocalAddr()
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("candidate"), Addr: []byte(client.LocalAddr())}

	var vote raft.RequestVoteResponse
	if err := client.RequestVote("n", addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 7, LastLogIndex: 0}, &vote); err != nil {
		t.Fatal(err)
	}
	if vote.Granted || vote.Term != 7 {
		t.Fatalf("a node not admitted voted: %+v", vote)
	}
	var pre raft.RequestPreVoteResponse
	if err := client.RequestPreVote("n", addr, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 8}, &pre); err != nil {
		t.Fatal(err)
	}
	if pre.Granted {
		t.Fatalf("a node not admitted pre-voted: %+v", pre)
	}
	select {
	case rpc := <-g.Consumer():
		t.Fatalf("a refused vote reached raft: %T", rpc.Command)
	default:
	}

	// Admitted: the request goes through to raft, which answers it.
	admitted.Store(true)
	done := make(chan error, 1)
	go func() {
		done <- client.RequestVote("n", addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 9}, &vote)
	}()
	select {
	case rpc := <-g.Consumer():
		if _, ok := rpc.Command.(*raft.RequestVoteRequest); !ok {
			t.Fatalf("got %T", rpc.Command)
		}
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 9, Granted: true}, nil)
	case <-time.After(10 * time.Second):
		t.Fatal("an admitted node's vote request never reached raft")
	}
	if err := <-done; err != nil || !vote.Granted {
		t.Fatalf("admitted vote: %+v %v", vote, err)
	}
	// Other RPCs always pass.
	go func() {
		var resp raft.AppendEntriesResponse
		admitted.Store(false)
		done <- client.AppendEntries("n", addr, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 9}, &resp)
	}()
	select {
	case rpc := <-g.Consumer():
		rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 9}, nil)
	case <-time.After(10 * time.Second):
		t.Fatal("append entries was held back")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
