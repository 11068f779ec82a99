// Package faultproxy is a fault-injecting TCP proxy for tests: it sits
// between a client and a real server (an S3 store, an agent) and, on
// command and while the test runs, makes the wire misbehave the way real
// networks and object stores do.
//
// It owns:
//
//   - the proxy: New listens on a loopback address (127.0.0.1:0 unless
//     ListenIP says otherwise) and opens one upstream connection per
//     client connection;
//   - faults on the bytes, each switchable at any time and healed by
//     setting it back to zero (or Heal): added latency per direction (a
//     delay line: every chunk leaves d after it arrived, throughput
//     unchanged), a bandwidth limit per direction shared by all
//     connections, resets (ResetAll sends RST on every open connection;
//     ResetAfter resets new connections once they carried n bytes), a
//     stall (requests are read and forwarded, answers are held: a hung
//     server) and refusal (new connections are reset at once);
//   - faults on HTTP requests (with the HTTP option): the next n, or a
//     fraction, of requests are answered by the proxy with an S3-style
//     XML error (503 SlowDown, 429, 500 InternalError) instead of being
//     forwarded; keep-alive connections keep working;
//   - counters (Stats): connections, refusals, resets, HTTP requests and
//     injected answers, so tests can assert that retries stay bounded.
//
// It must not know anything about crayfish: it is a piece of wire.
package faultproxy
