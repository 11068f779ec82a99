package gossip

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	// memberlist needs TCP and UDP on the same port.
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free tcp+udp port")
	return ""
}

func start(t *testing.T, id string, key []byte, label string, join ...string) *Gossip {
	t.Helper()
	addr := freePort(t)
	var logs bytes.Buffer
	g, err := Start(Config{BindAddr: addr, Join: join, Key: key, Label: label, RejoinInterval: 300 * time.Millisecond,
		Meta: Meta{NodeID: id, RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Zone: "z-" + id},
		Log:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Shutdown)
	return g
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statuses(g *Gossip) map[string]Status {
	out := map[string]Status{}
	for _, m := range g.Members() {
		out[m.NodeID] = m.Status
	}
	return out
}

func TestJoinMetadataAndLeave(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a := start(t, "a", key, "test")
	b := start(t, "b", key, "test", a.cfg.AdvertiseAddr)
	c := start(t, "c", key, "test", b.cfg.AdvertiseAddr)
	for _, g := range []*Gossip{a, b, c} {
		waitFor(t, "three alive members", func() bool {
			s := statuses(g)
			return len(s) == 3 && s["a"] == StatusAlive && s["b"] == StatusAlive && s["c"] == StatusAlive
		})
	}
	m, ok := a.Member("c")
	if !ok || m.Zone != "z-c" || m.RaftAddr != "127.0.0.1:1" || m.GossipAddr != c.cfg.AdvertiseAddr {
		t.Fatalf("a's view of c: %+v", m)
	}
	changed := a.Changed()
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c left", func() bool { return statuses(a)["c"] == StatusLeft })
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by a membership change")
	}
	for _, k := range a.KnownAddrs() {
		if k == c.cfg.AdvertiseAddr {
			t.Fatal("a member that left is still a rejoin target")
		}
	}
	a.Forget("c")
	if _, ok := a.Member("c"); ok {
		t.Fatal("Forget kept c")
	}
}

func TestDeathIsSeen(t *testing.T) {
	a := start(t, "a", nil, "")
	b := start(t, "b", nil, "", a.cfg.AdvertiseAddr)
	waitFor(t, "b alive at a", func() bool { return statuses(a)["b"] == StatusAlive })
	b.Shutdown() // no goodbye
	waitFor(t, "b dead at a", func() bool { return statuses(a)["b"] == StatusDead })
	if m, _ := a.Member("b"); time.Since(m.Since) > 15*time.Second {
		t.Fatalf("Since %v not updated", m.Since)
	}
}

// TestRejoinAfterRestart: a member that died and came back at the same
// address is rejoined by the loop, without anyone calling Join.
func TestRejoinAfterRestart(t *testing.T) {
	a := start(t, "a", nil, "")
	addr := freePort(t)
	mk := func() *Gossip {
		g, err := Start(Config{BindAddr: addr, RejoinInterval: time.Hour, Meta: Meta{NodeID: "b"}, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	b := mk()
	if _, err := a.Join([]string{addr}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b alive", func() bool { return statuses(a)["b"] == StatusAlive })
	b.Shutdown()
	waitFor(t, "b dead", func() bool { return statuses(a)["b"] == StatusDead })
	b = mk() // joins nobody itself
	defer b.Shutdown()
	waitFor(t, "b alive again through a's rejoin loop", func() bool { return statuses(a)["b"] == StatusAlive })
}

func TestWrongKeyOrLabelDoesNotJoin(t *testing.T) {
	a := start(t, "a", bytes.Repeat([]byte{1}, 16), "x")
	for i, tc := range []struct {
		key   []byte
		label string
	}{{bytes.Repeat([]byte{2}, 16), "x"}, {bytes.Repeat([]byte{1}, 16), "y"}, {nil, "x"}} {
		b := start(t, fmt.Sprintf("b%d", i), tc.key, tc.label)
		if _, err := b.Join([]string{a.cfg.AdvertiseAddr}); err == nil {
			t.Errorf("case %d: join across key/label succeeded", i)
		}
		if len(a.Members()) > 1 {
			t.Errorf("case %d: a sees %v", i, statuses(a))
		}
	}
}

func TestMetaTooLarge(t *testing.T) {
	_, err := Start(Config{BindAddr: freePort(t), Meta: Meta{NodeID: string(bytes.Repeat([]byte{'x'}, 600))}})
	if err == nil {
		t.Fatal("600-byte metadata accepted")
	}
}
