package transport

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTimeout bounds one Raft RPC over the network.
const RaftTimeout = 10 * time.Second

// NewRaftTransport listens on bindAddr and advertises advertiseAddr to
// peers. Raft's own TCP transport is enough while the stream needs no
// multiplexing or TLS; NewRaftTransportTLS is the TLS variant.
func NewRaftTransport(bindAddr, advertiseAddr string, logOut io.Writer) (*raft.NetworkTransport, error) {
	adv, err := checkAdvertiseAddr(advertiseAddr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", bindAddr, err)
	}
	stream := &tcpStreamLayer{ln: ln, advertise: adv, dialer: NewDialer(advertiseAddr, 0)}
	return raft.NewNetworkTransport(stream, raftMaxPool, RaftTimeout, logOut), nil
}

// tcpStreamLayer is raft's plain TCP stream layer, dialing from the
// node's source address (SourceIP).
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	dialer    *net.Dialer
}

func (s *tcpStreamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *tcpStreamLayer) Close() error              { return s.ln.Close() }
func (s *tcpStreamLayer) Addr() net.Addr            { return s.advertise }

func (s *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := *s.dialer
	d.Timeout = timeout
	return d.Dial("tcp", string(address))
}
