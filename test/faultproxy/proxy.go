package faultproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one way of a connection's bytes.
type Direction int

const (
	Up   Direction = iota // client to upstream: requests
	Down                  // upstream to client: answers
)

// Option configures New.
type Option func(*options)

type options struct {
	ip   string
	http bool
}

// ListenIP makes the proxy listen on ip (port chosen by the kernel)
// instead of 127.0.0.1.
func ListenIP(ip string) Option { return func(o *options) { o.ip = ip } }

// HTTP makes the proxy read the HTTP/1.1 requests on every connection: it
// counts them (Stats.Requests) and can answer some itself (FailNext,
// FailFraction). Requests are forwarded one by one, re-serialised by
// net/http; answers are passed through as bytes.
func HTTP() Option { return func(o *options) { o.http = true } }

// HTTPError is an answer the proxy gives instead of forwarding a request:
// a status and an S3-style XML error body with Code and Message.
type HTTPError struct {
	Status        int
	Code, Message string
}

// The S3 errors of throttling and of a failing server.
var (
	SlowDown        = HTTPError{http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."}
	TooManyRequests = HTTPError{http.StatusTooManyRequests, "TooManyRequests", "Too many requests, slow down."}
	InternalError   = HTTPError{http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again."}
)

// Stats counts what the proxy saw since New.
type Stats struct {
	Connections int64 // accepted, refused ones included
	Active      int   // open now
	Refused     int64 // reset at once by SetRefuse
	Resets      int64 // connections reset by ResetAll or ResetAfter
	Requests    int64 // HTTP requests read (HTTP option), injected ones included
	Injected    int64 // HTTP requests answered by the proxy
	BytesUp     int64 // forwarded to upstream (request bytes before parsing)
	BytesDown   int64 // forwarded to clients
}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	ln       net.Listener
	http     bool
	wg       sync.WaitGroup

	mu      sync.Mutex
	f       faults
	changed chan struct{} // closed and replaced at every change of f
	conns   map[*conn]struct{}
	closed  bool
	paced   [2]time.Time // per direction: when the bandwidth limit frees up
	seen    int64        // requests FailFraction has looked at
	hit     int64        // ... and answered

	connections, refused, resets, requests, injected atomic.Int64
	bytes                                            [2]atomic.Int64
}

type faults struct {
	latency    [2]time.Duration
	rate       [2]int64
	stall      bool
	refuse     bool
	resetAfter int64
	failNext   int
	fraction   float64
	failWith   HTTPError
}

// New starts a proxy to upstream (host:port) on 127.0.0.1:0, or on the IP
// of ListenIP.
func New(upstream string, opts ...Option) (*Proxy, error) {
	o := options{ip: "127.0.0.1"}
	for _, opt := range opts {
		opt(&o)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{upstream: upstream, ln: ln, http: o.http, changed: make(chan struct{}), conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port, to give clients instead of upstream's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening, closes every connection and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.killAll(false)
	p.wg.Wait()
	return err
}

// set changes the faults and wakes every wait that depends on them.
func (p *Proxy) set(change func(*faults)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change(&p.f)
	p.paced = [2]time.Time{} // a new limit starts a new schedule
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) faults() (faults, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f, p.changed
}

// SetLatency delays every chunk of bytes going in direction dir by d after
// it arrived (0 heals). It is a delay line: throughput is unchanged.
func (p *Proxy) SetLatency(dir Direction, d time.Duration) {
	p.set(func(f *faults) { f.latency[dir] = max(d, 0) })
}

// SetBandwidth limits direction dir to bytesPerSecond over all
// connections together (0 heals).
func (p *Proxy) SetBandwidth(dir Direction, bytesPerSecond int64) {
	p.set(func(f *faults) { f.rate[dir] = max(bytesPerSecond, 0) })
}

// SetStall holds every answer (upstream's bytes, and the proxy's own)
// while on; requests are still read and forwarded, as to a hung server.
// Turning it off releases what was held.
func (p *Proxy) SetStall(on bool) { p.set(func(f *faults) { f.stall = on }) }

// SetRefuse resets new connections as soon as they are accepted while on.
func (p *Proxy) SetRefuse(on bool) { p.set(func(f *faults) { f.refuse = on }) }

// ResetAfter resets (RST) every connection, while set, once it has
// carried n bytes since it was accepted, both directions counted (0
// heals). A long-lived connection past n resets at its next byte.
func (p *Proxy) ResetAfter(n int64) { p.set(func(f *faults) { f.resetAfter = max(n, 0) }) }

// ResetAll resets (RST, on both sides) every open connection and returns
// how many there were.
func (p *Proxy) ResetAll() int { return p.killAll(true) }

// FailNext answers the next n HTTP requests with e (n 0 heals). It needs
// the HTTP option.
func (p *Proxy) FailNext(n int, e HTTPError) {
	p.needHTTP()
	p.set(func(f *faults) { f.failNext, f.failWith = max(n, 0), e })
}

// FailFraction answers the given fraction (0 to 1) of HTTP requests with
// e, evenly spread (0 heals). It needs the HTTP option.
func (p *Proxy) FailFraction(fraction float64, e HTTPError) {
	p.needHTTP()
	p.set(func(f *faults) { f.fraction, f.failWith = min(max(fraction, 0), 1), e })
	p.mu.Lock()
	p.seen, p.hit = 0, 0
	p.mu.Unlock()
}

func (p *Proxy) needHTTP() {
	if !p.http {
		panic("faultproxy: HTTP faults need a proxy made with the HTTP option")
	}
}

// Heal turns every fault off. Open connections stay open.
func (p *Proxy) Heal() { p.set(func(f *faults) { *f = faults{} }) }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{Connections: p.connections.Load(), Active: active, Refused: p.refused.Load(),
		Resets: p.resets.Load(), Requests: p.requests.Load(), Injected: p.injected.Load(),
		BytesUp: p.bytes[Up].Load(), BytesDown: p.bytes[Down].Load()}
}

// inject decides whether the proxy answers the request it just read.
func (p *Proxy) inject() (HTTPError, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests.Add(1)
	if p.f.failNext > 0 {
		p.f.failNext--
		p.injected.Add(1)
		return p.f.failWith, true
	}
	if p.f.fraction > 0 {
		p.seen++
		if float64(p.hit) < float64(p.seen)*p.f.fraction {
			p.hit++
			p.injected.Add(1)
			return p.f.failWith, true
		}
	}
	return HTTPError{}, false
}

func (p *Proxy) killAll(rst bool) int {
	p.mu.Lock()
	all := make([]*conn, 0, len(p.conns))
	for k := range p.conns {
		all = append(all, k)
	}
	p.mu.Unlock()
	for _, k := range all {
		if rst {
			p.resets.Add(1)
		}
		k.kill(rst)
	}
	return len(all)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.connections.Add(1)
		f, _ := p.faults()
		if f.refuse {
			p.refused.Add(1)
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c.(*net.TCPConn))
	}
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// conn is one proxied connection: a reader and a writer goroutine per
// direction, joined by a channel of chunks, and with the HTTP option a
// request parser between the upward writer and upstream.
type conn struct {
	p            *Proxy
	client, up   *net.TCPConn
	pr           *io.PipeReader // HTTP option: the parser's input
	carried      atomic.Int64
	down         chan chunk // to the client: upstream's bytes and the proxy's answers
	dead         chan struct{}
	once         sync.Once
	halvesClosed atomic.Int32
}

// chunk is bytes read from one side, stamped with their arrival.
type chunk struct {
	b    []byte
	at   time.Time
	eof  bool // the source ended: half-close the destination
	last bool // close the connection once b is written
}

func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		reset(client) // as if the server were the one refusing
		return
	}
	// Fixed socket buffers: autotuned ones grow to tens of MiB on
	// loopback and would sit, unpaced, in front of a bandwidth limit or a
	// stall, unlike a link's. 256 KiB still carries GB/s on loopback.
	for _, c := range []*net.TCPConn{client, u.(*net.TCPConn)} {
		_ = c.SetReadBuffer(256 << 10)
		_ = c.SetWriteBuffer(256 << 10)
	}
	k := &conn{p: p, client: client, up: u.(*net.TCPConn),
		down: make(chan chunk, 16), dead: make(chan struct{})}
	var pw *io.PipeWriter
	if p.http {
		k.pr, pw = io.Pipe()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		k.kill(false)
		return
	}
	p.conns[k] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, k)
		p.mu.Unlock()
	}()

	upward := make(chan chunk, 16)
	var wg sync.WaitGroup
	wg.Go(func() { k.read(k.up, k.down) })
	wg.Go(func() { k.write(Down, k.down, k.client, func() { _ = k.client.CloseWrite(); k.halfClosed() }) })
	wg.Go(func() { k.read(k.client, upward) })
	if p.http {
		wg.Go(func() { k.write(Up, upward, pw, func() { pw.Close() }) })
		wg.Go(func() { k.serveHTTP(bufio.NewReader(k.pr)) })
	} else {
		wg.Go(func() { k.write(Up, upward, k.up, func() { _ = k.up.CloseWrite(); k.halfClosed() }) })
	}
	wg.Wait()
	k.kill(false)
}

// kill ends the connection on both sides, with RST if rst.
func (k *conn) kill(rst bool) {
	k.once.Do(func() {
		close(k.dead)
		for _, c := range []*net.TCPConn{k.client, k.up} {
			if rst {
				_ = c.SetLinger(0)
			}
			c.Close()
		}
		if k.pr != nil {
			k.pr.CloseWithError(net.ErrClosed)
		}
	})
}

// halfClosed records that one direction ended; the second one ends the
// connection.
func (k *conn) halfClosed() {
	if k.halvesClosed.Add(1) == 2 {
		k.kill(false)
	}
}

func (k *conn) send(ch chan<- chunk, c chunk) bool {
	select {
	case ch <- c:
		return true
	case <-k.dead:
		return false
	}
}

// read moves src's bytes into ch, stamped, then an eof chunk.
func (k *conn) read(src net.Conn, ch chan<- chunk) {
	for {
		b := make([]byte, 32<<10)
		n, err := src.Read(b)
		if n > 0 && !k.send(ch, chunk{b: b[:n], at: time.Now()}) {
			return
		}
		if err != nil {
			k.send(ch, chunk{eof: true, at: time.Now()})
			return
		}
	}
}

// write moves ch's chunks to dst through the faults of direction dir; at
// the eof chunk it calls eof.
func (k *conn) write(dir Direction, ch <-chan chunk, dst io.Writer, eof func()) {
	for {
		var c chunk
		select {
		case c = <-ch:
		case <-k.dead:
			return
		}
		if !k.hold(dir, c.at) {
			return
		}
		if c.eof {
			eof()
			return
		}
		// Small pieces, so that a bandwidth limit or a reset threshold
		// bites inside a large read.
		for b := c.b; len(b) > 0; {
			n := min(len(b), 16<<10)
			if !k.pace(dir, n) {
				return
			}
			if _, err := dst.Write(b[:n]); err != nil {
				k.kill(false)
				return
			}
			b = b[n:]
			k.p.bytes[dir].Add(int64(n))
			if f, _ := k.p.faults(); k.carried.Add(int64(n)) >= f.resetAfter && f.resetAfter > 0 {
				k.p.resets.Add(1)
				k.kill(true)
				return
			}
		}
		if c.last {
			k.kill(false)
			return
		}
	}
}

// hold waits until a chunk that arrived at may leave in direction dir:
// its latency has passed and, going down, no stall holds it. False: the
// connection died meanwhile.
func (k *conn) hold(dir Direction, at time.Time) bool {
	for {
		f, changed := k.p.faults()
		var timer <-chan time.Time
		if dir == Down && f.stall {
			// only a change of the faults ends this wait
		} else if left := time.Until(at.Add(f.latency[dir])); left > 0 {
			timer = time.After(left)
		} else {
			return true
		}
		select {
		case <-timer:
		case <-changed:
		case <-k.dead:
			return false
		}
	}
}

// pace waits for n bytes' share of direction dir's bandwidth limit.
func (k *conn) pace(dir Direction, n int) bool {
	p := k.p
	p.mu.Lock()
	rate, changed := p.f.rate[dir], p.changed
	var until time.Time
	if rate > 0 {
		now := time.Now()
		if p.paced[dir].Before(now) {
			p.paced[dir] = now
		}
		p.paced[dir] = p.paced[dir].Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
		until = p.paced[dir]
	}
	p.mu.Unlock()
	if until.IsZero() {
		return true
	}
	select {
	case <-time.After(time.Until(until)):
	case <-changed: // a lifted limit frees the bytes at once
	case <-k.dead:
		return false
	}
	return true
}

// serveHTTP reads requests from the client's bytes (after the upward
// faults) and forwards each to upstream, or answers it with an injected
// error. The client must not pipeline (no HTTP/1.1 client does by
// default): an answer of the proxy goes out after upstream's earlier ones.
func (k *conn) serveHTTP(br *bufio.Reader) {
	defer func() {
		_ = k.up.CloseWrite()
		k.halfClosed()
	}()
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		expect := strings.EqualFold(req.Header.Get("Expect"), "100-continue")
		if e, ok := k.p.inject(); ok {
			// A client waiting for 100 Continue sends no body: the
			// connection cannot be reused.
			closing := expect || req.Close
			if !expect {
				if _, err := io.Copy(io.Discard, req.Body); err != nil {
					return
				}
			}
			if !k.send(k.down, chunk{b: e.response(req, closing, k.p.injected.Load()), at: time.Now(), last: closing}) || closing {
				return
			}
			continue
		}
		if expect {
			// Answered here: upstream would get the request head only
			// after its body (net/http buffers the head), and the client
			// would wait for its ExpectContinueTimeout on every upload.
			req.Header.Del("Expect")
			if !k.send(k.down, chunk{b: []byte("HTTP/1.1 100 Continue\r\n\r\n"), at: time.Now()}) {
				return
			}
		}
		if err := req.Write(k.up); err != nil {
			k.kill(true)
			return
		}
	}
}

// response is e as an HTTP/1.1 answer to req.
func (e HTTPError) response(req *http.Request, closing bool, n int64) []byte {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faultproxy-%d</RequestId></Error>",
		e.Code, e.Message, req.URL.Path, n)
	if req.Method == http.MethodHead {
		body = ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\nx-amz-request-id: faultproxy-%d\r\n",
		e.Status, http.StatusText(e.Status), len(body), n)
	if closing {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String())
}
