package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/crayfish-backup/crayfish/internal/testcert"
)

// newTLSTransport starts a TLS Raft transport on a free loopback port.
func newTLSTransport(t *testing.T, f TLSFiles) *raft.NetworkTransport {
	t.Helper()
	srv, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Port 0 cannot be advertised, so take a free port first.
	addr := freeAddr(t)
	tr, err := NewRaftTransportTLS(addr, addr, srv, cli, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveAppendEntries answers every AppendEntries arriving at tr with
// Success and the request's term, and reports each request on got.
func serveAppendEntries(tr *raft.NetworkTransport) <-chan *raft.AppendEntriesRequest {
	got := make(chan *raft.AppendEntriesRequest, 16)
	go func() {
		for rpc := range tr.Consumer() {
			req, ok := rpc.Command.(*raft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, errors.New("unexpected command"))
				continue
			}
			got <- req
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + 1, Success: true}, nil)
		}
	}()
	return got
}

func appendEntries(from, to *raft.NetworkTransport) (*raft.AppendEntriesResponse, error) {
	req := &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ID: []byte("n1"), Addr: []byte(from.LocalAddr())},
		Term:         7,
		PrevLogEntry: 41,
		PrevLogTerm:  6,
		Entries:      []*raft.Log{{Index: 42, Term: 7, Type: raft.LogCommand, Data: []byte("hello over tls")}},
	}
	var resp raft.AppendEntriesResponse
	err := from.AppendEntries("n2", to.LocalAddr(), req, &resp)
	return &resp, err
}

func TestRaftTransportTLSAppendEntries(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		name := "server-auth"
		if mutual {
			name = "mutual"
		}
		t.Run(name, func(t *testing.T) {
			ca := testcert.NewCA(t)
			dir := t.TempDir()
			a := newTLSTransport(t, nodeFiles(t, ca, filepath.Join(dir, "a"), "a", mutual))
			b := newTLSTransport(t, nodeFiles(t, ca, filepath.Join(dir, "b"), "b", mutual))
			got := serveAppendEntries(b)

			// Twice: the second call reuses the pooled connection.
			for i := 0; i < 2; i++ {
				resp, err := appendEntries(a, b)
				if err != nil {
					t.Fatalf("AppendEntries %d: %v", i, err)
				}
				if !resp.Success || resp.Term != 7 || resp.LastLog != 42 {
					t.Errorf("response %+v", resp)
				}
				select {
				case req := <-got:
					if len(req.Entries) != 1 || !bytes.Equal(req.Entries[0].Data, []byte("hello over tls")) {
						t.Errorf("request entries %+v", req.Entries)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("b saw no request")
				}
			}
		})
	}
}

// TestRaftTransportTLSRejectsUnverifiedClients: with mutual TLS, a peer
// whose certificate comes from another CA, or that has none, gets no RPC
// through.
func TestRaftTransportTLSRejectsUnverifiedClients(t *testing.T) {
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	b := newTLSTransport(t, nodeFiles(t, ca, filepath.Join(dir, "b"), "b", true))
	got := serveAppendEntries(b)

	// A client from a rogue CA that trusts b's CA (so only b can refuse).
	rogue := testcert.NewCA(t)
	rf := nodeFiles(t, rogue, filepath.Join(dir, "rogue"), "rogue", true)
	rf.CAFile = filepath.Join(dir, "b", "ca.pem")
	// A client with no certificate at all.
	anon := TLSFiles{CAFile: filepath.Join(dir, "b", "ca.pem")}

	for _, tc := range []struct {
		name string
		f    TLSFiles
		want string // in the client's error, as TLS alerts word it
	}{
		{"foreign CA", rf, "unknown certificate authority"},
		{"no certificate", anon, "certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := tc.f.ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			// The client node serves with a config of its own; only its
			// dialing side matters here.
			srv, err := nodeFiles(t, rogue, t.TempDir(), "x", false).ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			a, err := NewRaftTransportTLS(addr, addr, srv, cli, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			resp, err := appendEntries(a, b)
			if err == nil {
				t.Fatalf("AppendEntries succeeded without a valid client certificate: %+v", resp)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
	select {
	case req := <-got:
		t.Fatalf("b received %+v", req)
	default:
	}
}

// TestRaftTransportTLSRejectsPlainTCP: a peer speaking plain Raft over TCP
// reaches no RPC handler, and a TLS transport cannot reach a plain one.
func TestRaftTransportTLSRejectsPlainTCP(t *testing.T) {
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	b := newTLSTransport(t, nodeFiles(t, ca, filepath.Join(dir, "b"), "b", false))
	got := serveAppendEntries(b)

	addr := freeAddr(t)
	plain, err := NewRaftTransport(addr, addr, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plainGot := serveAppendEntries(plain)

	if _, err := appendEntries(plain, b); err == nil {
		t.Error("plain TCP AppendEntries to the TLS listener succeeded")
	}
	a := newTLSTransport(t, nodeFiles(t, ca, filepath.Join(dir, "a"), "a", false))
	if _, err := appendEntries(a, plain); err == nil {
		t.Error("TLS AppendEntries to a plain listener succeeded")
	}
	select {
	case req := <-got:
		t.Fatalf("TLS side received %+v", req)
	case req := <-plainGot:
		t.Fatalf("plain side received %+v", req)
	default:
	}
}

// TestRaftTransportTLSHandshakeTimeout: a connection that never
// handshakes is dropped after the handshake timeout instead of holding
// Raft's connection goroutine forever (Raft sets no read deadline).
func TestRaftTransportTLSHandshakeTimeout(t *testing.T) {
	ca := testcert.NewCA(t)
	srv, err := nodeFiles(t, ca, t.TempDir(), "b", false).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsStreamLayer{ln: ln, advertise: ln.Addr(), server: srv, handshakeTimeout: 100 * time.Millisecond}
	defer s.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := s.Accept() // returns at once: no handshake in Accept
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "tls handshake") {
			t.Errorf("read error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer held the connection")
	}
	// The write side sees the same handshake error.
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Error("write after a failed handshake succeeded")
	}
}

func TestNewRaftTransportTLSChecks(t *testing.T) {
	ca := testcert.NewCA(t)
	f := nodeFiles(t, ca, t.TempDir(), "n", false)
	srv, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, adv := range []string{"0.0.0.0:7301", "[::]:7301", ":7301", "no-port"} {
		if _, err := NewRaftTransportTLS("127.0.0.1:0", adv, srv, cli, io.Discard); err == nil {
			t.Errorf("advertise %q accepted", adv)
		}
		if _, err := NewRaftTransport("127.0.0.1:0", adv, io.Discard); err == nil {
			t.Errorf("plain: advertise %q accepted", adv)
		}
	}
	if _, err := NewRaftTransportTLS("127.0.0.1:0", "127.0.0.1:7301", nil, cli, io.Discard); !errors.Is(err, ErrTLSConfig) {
		t.Errorf("nil server config: %v", err)
	}
	if _, err := NewRaftTransportTLS("127.0.0.1:0", "127.0.0.1:7301", &tls.Config{}, cli, io.Discard); !errors.Is(err, ErrTLSConfig) {
		t.Errorf("server config without certificate: %v", err)
	}
	addr := freeAddr(t)
	tr, err := NewRaftTransportTLS(addr, addr, srv, cli, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if string(tr.LocalAddr()) != addr {
		t.Errorf("LocalAddr %q, want %q", tr.LocalAddr(), addr)
	}
	if _, err := NewRaftTransportTLS(addr, addr, srv, cli, io.Discard); err == nil {
		t.Error("second transport on a bound address succeeded")
	}
}
