package faultproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// payload is n deterministic bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// upstream is a tiny HTTP server: GET /bytes?n=N answers N bytes, PUT
// /echo answers the SHA-256 of its body, GET /slow sends a little and then
// waits for the client to go away.
func upstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bytes":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(payload(n))
		case "/echo":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/slow":
			w.Header().Set("Content-Length", "1000000")
			_, _ = w.Write(payload(1000))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func start(t *testing.T, opts ...Option) (*Proxy, *http.Client, string) {
	t.Helper()
	srv := upstream(t)
	p, err := New(srv.Listener.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return p, &http.Client{Transport: tr, Timeout: 30 * time.Second}, "http://" + p.Addr()
}

// get fetches url and checks that it carries n payload bytes.
func get(c *http.Client, url string, n int) error {
	resp, err := c.Get(fmt.Sprintf("%s/bytes?n=%d", url, n))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if !bytes.Equal(b, payload(n)) {
		return fmt.Errorf("%d bytes differ from the %d sent", len(b), n)
	}
	return nil
}

// put uploads n payload bytes with Expect: 100-continue and checks the
// echoed digest.
func put(c *http.Client, url string, n int) (int, error) {
	req, _ := http.NewRequest(http.MethodPut, url+"/echo", bytes.NewReader(payload(n)))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	if want := fmt.Sprintf("%d %x", n, sha256.Sum256(payload(n))); string(b) != want {
		return 200, fmt.Errorf("echo %q, want %q", b, want)
	}
	return 200, nil
}

func TestPassThrough(t *testing.T) {
	for _, mode := range []string{"raw", "http"} {
		t.Run(mode, func(t *testing.T) {
			var opts []Option
			if mode == "http" {
				opts = append(opts, HTTP())
			}
			p, c, url := start(t, opts...)
			for i := range 20 {
				if err := get(c, url, 1+i*40000); err != nil {
					t.Fatal(err)
				}
			}
			begin := time.Now()
			if st, err := put(c, url, 3<<20); err != nil || st != 200 {
				t.Fatalf("put: %d %v", st, err)
			}
			if d := time.Since(begin); mode == "http" && d > 4*time.Second {
				t.Fatalf("the upload waited %v: the proxy did not answer 100 Continue", d)
			}
			s := p.Stats()
			if s.Connections != 1 {
				t.Fatalf("keep-alive: %d connections", s.Connections)
			}
			if mode == "http" && s.Requests != 21 {
				t.Fatalf("%d requests counted, want 21", s.Requests)
			}
			if s.BytesUp < 3<<20 || s.BytesDown < 20*380000 {
				t.Fatalf("bytes: %+v", s)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	p, c, url := start(t)
	if err := get(c, url, 10); err != nil { // a warm connection
		t.Fatal(err)
	}
	p.SetLatency(Up, 150*time.Millisecond)
	p.SetLatency(Down, 150*time.Millisecond)
	begin := time.Now()
	if err := get(c, url, 4<<20); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Fatalf("a round trip took %v with 150ms each way", d)
	}
	p.Heal()
	if err := get(c, url, 10); err != nil {
		t.Fatal(err)
	}
}

func TestBandwidth(t *testing.T) {
	p, c, url := start(t)
	p.SetBandwidth(Down, 256<<10)
	begin := time.Now()
	if err := get(c, url, 512<<10); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 1500*time.Millisecond {
		t.Fatalf("512 KiB at 256 KiB/s took %v", d)
	}
	// Lifting the limit mid-transfer releases the rest.
	p.SetBandwidth(Down, 1<<10)
	done := make(chan error, 1)
	go func() { done <- get(c, url, 1<<20) }()
	time.Sleep(200 * time.Millisecond)
	p.SetBandwidth(Down, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the transfer did not finish after the limit was lifted")
	}
	// A new limit does not inherit the old one's backlog.
	p.SetBandwidth(Down, 1)
	go func() { done <- get(c, url, 1<<20) }()
	time.Sleep(200 * time.Millisecond)
	p.SetBandwidth(Down, 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.SetBandwidth(Down, 4<<20)
	if err := get(c, url, 1<<20); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > time.Minute {
		t.Fatalf("the limits took %v", d)
	}
}

func TestResetAll(t *testing.T) {
	p, c, url := start(t)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(url + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return p.Stats().BytesDown >= 1000 })
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll reset %d connections", n)
	}
	if err := <-errc; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after ResetAll: %v, want a connection reset", err)
	}
	if s := p.Stats(); s.Resets != 1 {
		t.Fatalf("%+v", s)
	}
	if err := get(c, url, 100); err != nil {
		t.Fatal(err)
	}
}

func TestResetAfter(t *testing.T) {
	p, c, url := start(t, HTTP())
	p.ResetAfter(256 << 10)
	if err := get(c, url, 1<<20); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a 1 MiB download through ResetAfter(256 KiB): %v", err)
	}
	if _, err := put(c, url, 1<<20); err == nil {
		t.Fatal("a 1 MiB upload through ResetAfter(256 KiB) succeeded")
	}
	if err := get(c, url, 100<<10); err != nil {
		t.Fatalf("a small download: %v (%+v)", err, p.Stats())
	}
	if s := p.Stats(); s.Resets != 2 {
		t.Fatalf("%+v", s)
	}
	p.ResetAfter(0)
	if err := get(c, url, 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestStall(t *testing.T) {
	p, c, url := start(t, HTTP())
	p.SetStall(true)
	short := &http.Client{Transport: c.Transport, Timeout: 300 * time.Millisecond}
	var nerr net.Error
	if err := get(short, url, 100); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("a request to a stalled server: %v, want a timeout", err)
	}
	// Requests still reach the server; their answers wait for the heal.
	done := make(chan error, 1)
	go func() {
		_, err := put(c, url, 1<<20)
		done <- err
	}()
	waitFor(t, func() bool { return p.Stats().Requests == 2 && p.Stats().BytesUp >= 1<<20 })
	select {
	case err := <-done:
		t.Fatalf("an answer passed the stall: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	p.Heal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRefuse(t *testing.T) {
	p, c, url := start(t)
	p.SetRefuse(true)
	if err := get(c, url, 10); err == nil {
		t.Fatal("a refused connection answered")
	}
	if s := p.Stats(); s.Refused != 1 || s.Connections != 1 {
		t.Fatalf("%+v", s)
	}
	p.SetRefuse(false)
	if err := get(c, url, 10); err != nil {
		t.Fatal(err)
	}
}

// s3Error parses an S3 error body.
type s3Error struct {
	Code, Message, Resource, RequestID string
}

func TestFailNext(t *testing.T) {
	for _, e := range []HTTPError{SlowDown, TooManyRequests, InternalError} {
		t.Run(e.Code, func(t *testing.T) {
			p, c, url := start(t, HTTP())
			p.FailNext(3, e)
			for i := range 3 {
				resp, err := c.Get(url + "/bytes?n=10")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var x s3Error
				if err := xml.Unmarshal(b, &x); err != nil || resp.StatusCode != e.Status || x.Code != e.Code || x.Resource != "/bytes" {
					t.Fatalf("answer %d: %d %q (%v)", i, resp.StatusCode, b, err)
				}
			}
			if err := get(c, url, 10); err != nil {
				t.Fatal(err)
			}
			// HEAD gets no body; an upload waiting for 100 Continue gets
			// the error and a closed connection.
			p.FailNext(2, e)
			resp, err := c.Head(url + "/bytes?n=10")
			if err != nil || resp.StatusCode != e.Status {
				t.Fatalf("HEAD: %v %v", resp, err)
			}
			resp.Body.Close()
			if st, err := put(c, url, 1<<20); err != nil || st != e.Status {
				t.Fatalf("put: %d %v", st, err)
			}
			if st, err := put(c, url, 1<<20); err != nil || st != 200 {
				t.Fatalf("put after the faults: %d %v", st, err)
			}
			if s := p.Stats(); s.Requests != 7 || s.Injected != 5 || s.Connections != 2 {
				t.Fatalf("%+v: want 7 requests, 5 injected, 2 connections (the refused upload closes one)", s)
			}
		})
	}
}

func TestFailFraction(t *testing.T) {
	p, c, url := start(t, HTTP())
	p.FailFraction(0.25, SlowDown)
	failed := 0
	for range 100 {
		resp, err := c.Get(url + "/bytes?n=10")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			failed++
		}
	}
	if s := p.Stats(); failed != 25 || s.Injected != 25 || s.Connections != 1 {
		t.Fatalf("%d of 100 failed, %+v", failed, s)
	}
	p.FailFraction(0, SlowDown)
	if err := get(c, url, 10); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	p, c, url := start(t)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(url + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return p.Stats().Active == 1 && p.Stats().BytesDown >= 1000 })
	p.SetStall(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hung on a stalled connection")
	}
	if err := <-errc; err == nil {
		t.Fatal("the transfer survived Close")
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second); err == nil {
		t.Fatal("still listening after Close")
	}
}

func TestListenIP(t *testing.T) {
	p, err := New("127.0.0.1:1", ListenIP("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if host, _, _ := net.SplitHostPort(p.Addr()); host != "127.0.0.2" {
		t.Fatalf("listening on %s", p.Addr())
	}
	// A dead upstream: the client's connection is reset.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return // reset before connect returned
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a proxy with no upstream")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
