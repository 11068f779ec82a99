package gossip

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

// FuzzMemberMeta feeds arbitrary node metadata, as memberlist delivers
// another node's (at most 512 bytes, from the network), to the join,
// update and leave callbacks. Nothing may panic. A member is recorded
// only when the metadata decodes and names the node's own id, and then
// with exactly that metadata; a dead member that said it was leaving is
// recorded as left and dropped from the rejoin targets.
func FuzzMemberMeta(f *testing.F) {
	good, _ := json.Marshal(Meta{NodeID: "n2", RaftAddr: "127.0.0.2:7301", HTTPAddr: "127.0.0.2:7300", Zone: "a", BootstrapExpect: 3, RepoID: "abc"})
	leaving, _ := json.Marshal(Meta{NodeID: "n2", Leaving: true})
	f.Add("n2", good, byte(0))
	f.Add("n2", leaving, byte(2))
	f.Add("n3", good, byte(1))
	f.Add("n2", []byte(`{"id":"n2","expect":1e400}`), byte(0))
	f.Add("", []byte(`{}`), byte(0))
	f.Fuzz(func(t *testing.T, name string, meta []byte, event byte) {
		if len(meta) > memberlist.MetaMaxSize {
			return
		}
		g := &Gossip{log: slog.New(slog.NewTextHandler(io.Discard, nil)), members: map[string]*Member{},
			known: map[string]bool{}, changed: make(chan struct{})}
		n := &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 9), Port: 7302, Meta: meta}
		e := (*events)(g)
		e.NotifyJoin(n)
		switch event % 3 {
		case 1:
			e.NotifyUpdate(n)
		case 2:
			e.NotifyLeave(n)
		}
		var want Meta
		valid := json.Unmarshal(meta, &want) == nil && want.NodeID == name
		m, ok := g.Member(name)
		if ok != valid {
			t.Fatalf("member recorded %v, metadata valid %v", ok, valid)
		}
		if !ok {
			if len(g.Members()) != 0 {
				t.Fatal("a member recorded under another name")
			}
			return
		}
		if m.Meta != want {
			t.Fatalf("recorded %+v, sent %+v", m.Meta, want)
		}
		left := event%3 == 2 && want.Leaving
		if left != (m.Status == StatusLeft) || (left && len(g.KnownAddrs()) != 0) {
			t.Fatalf("status %v, known %v after event %d with leaving %v", m.Status, g.KnownAddrs(), event%3, want.Leaving)
		}
	})
}
