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
// multiplexing or TLS; a custom StreamLayer slots in here when it does.
func NewRaftTransport(bindAddr, advertiseAddr string, logOut io.Writer) (*raft.NetworkTransport, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("raft advertise address %q: %w", advertiseAddr, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft advertise address %q: must be a reachable IP, not a wildcard", advertiseAddr)
	}
	t, err := raft.NewTCPTransport(bindAddr, adv, 3, RaftTimeout, logOut)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", bindAddr, err)
	}
	return t, nil
}
