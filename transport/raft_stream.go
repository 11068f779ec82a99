package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftMaxPool is how many idle connections a Raft transport keeps per peer.
const raftMaxPool = 3

// handshakeTimeout bounds the server side of a TLS handshake. Raft's
// NetworkTransport reads inbound connections without a deadline, so
// without it a peer (or port scanner) that connects and stays silent
// would hold a goroutine forever.
const handshakeTimeout = RaftTimeout

// checkAdvertiseAddr resolves the address a node gives its peers. It must
// be a concrete IP: peers store and dial it, and a wildcard such as
// 0.0.0.0 would send them to themselves.
func checkAdvertiseAddr(advertiseAddr string) (*net.TCPAddr, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("raft advertise address %q: %w", advertiseAddr, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft advertise address %q: must be a reachable IP, not a wildcard", advertiseAddr)
	}
	return adv, nil
}

// NewRaftTransportTLS is like NewRaftTransport but every Raft connection
// is TLS with the given server and client configs; it is mutual when the
// server config requires client certificates. Build the configs with
// TLSFiles.ServerConfig and TLSFiles.ClientConfig.
func NewRaftTransportTLS(bindAddr, advertiseAddr string, server, client *tls.Config, logOut io.Writer) (*raft.NetworkTransport, error) {
	if server == nil || client == nil {
		return nil, fmt.Errorf("%w: raft transport needs both a server and a client TLS config", ErrTLSConfig)
	}
	if len(server.Certificates) == 0 && server.GetCertificate == nil && server.GetConfigForClient == nil {
		return nil, fmt.Errorf("%w: raft transport server TLS config has no certificate", ErrTLSConfig)
	}
	adv, err := checkAdvertiseAddr(advertiseAddr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", bindAddr, err)
	}
	stream := &tlsStreamLayer{ln: ln, advertise: adv, server: server, client: client, handshakeTimeout: handshakeTimeout,
		dialer: NewDialer(advertiseAddr, 0)}
	return raft.NewNetworkTransport(stream, raftMaxPool, RaftTimeout, logOut), nil
}

// tlsStreamLayer is a raft.StreamLayer that speaks TLS on both ends.
type tlsStreamLayer struct {
	ln               net.Listener
	advertise        net.Addr
	server, client   *tls.Config
	handshakeTimeout time.Duration // of inbound connections
	dialer           *net.Dialer   // outbound, from the node's source address
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// Accept returns the next inbound connection without handshaking: the
// handshake happens on the connection's first Read or Write, in Raft's
// per-connection goroutine, so one slow peer cannot stall the accept loop.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, s.server), timeout: s.handshakeTimeout}, nil
}

// Close stops listening. Established connections belong to Raft's
// NetworkTransport, which closes them itself.
func (s *tlsStreamLayer) Close() error { return s.ln.Close() }

// Addr is the advertised address: NetworkTransport reports it as the
// node's own Raft address.
func (s *tlsStreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects and completes the handshake within timeout, so a peer that
// is not speaking TLS fails the dial rather than the first RPC. The server
// name comes from the address unless the client config sets one.
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{Config: s.client, NetDialer: s.dialer}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return d.DialContext(ctx, "tcp", string(address))
}

// serverConn is an accepted TLS connection whose handshake, run on first
// use, is bounded by timeout.
type serverConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if err := c.Conn.HandshakeContext(ctx); err != nil {
			c.err = fmt.Errorf("tls handshake with %s: %w", c.RemoteAddr(), err)
			if errors.Is(err, context.DeadlineExceeded) {
				c.err = fmt.Errorf("tls handshake with %s: none within %v: %w", c.RemoteAddr(), c.timeout, err)
			}
		}
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
