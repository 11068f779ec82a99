// Package forward passes a client's request on to the Raft leader, so any
// node serves every call: the client never follows a redirect. It owns
// only the proxying (and its loop guard); who the leader is and which
// requests need it are the caller's business.
package forward

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
)

// Header marks a forwarded request with the forwarding node's id. A node
// that receives a forwarded request and is not the leader either answers
// "no leader" instead of forwarding again, so requests never loop while
// leadership moves.
const Header = "X-Crayfish-Forwarded-By"

// ErrLoop: a forwarded request reached a node that is not the leader.
var ErrLoop = errors.New("forwarded request reached a non-leader")

// Forwarder proxies requests to another node's HTTP API.
type Forwarder struct {
	NodeID    string            // this node, named in Header
	Transport http.RoundTripper // TLS settings of node-to-node calls; nil: default
	// OnError is called when the leader cannot be reached (the caller
	// writes its usual error answer).
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// Forwarded reports whether r was forwarded by another node.
func Forwarded(r *http.Request) bool { return r.Header.Get(Header) != "" }

// Forward sends r to the node at base (scheme://host:port) and copies its
// answer back, streaming (long-polls and large bodies pass through).
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, base string) {
	if Forwarded(r) {
		f.OnError(w, r, fmt.Errorf("%w (from %s)", ErrLoop, r.Header.Get(Header)))
		return
	}
	target, err := url.Parse(base)
	if err != nil {
		f.OnError(w, r, fmt.Errorf("leader address %q: %w", base, err))
		return
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(Header, f.NodeID)
		},
		Transport:     f.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.OnError(w, r, fmt.Errorf("forward to leader %s: %w", base, err))
		},
	}
	p.ServeHTTP(w, r)
}
