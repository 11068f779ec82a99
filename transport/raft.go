package transport

import (
	"fmt"
	"io"
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
	t, err := raft.NewTCPTransport(bindAddr, adv, raftMaxPool, RaftTimeout, logOut)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", bindAddr, err)
	}
	return t, nil
}
