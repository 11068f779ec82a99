package transport

import (
	"net"
	"time"
)

// SourceIP is the address a node's outgoing connections should come
// from: its advertised IP when that is a loopback address, nil otherwise
// (the kernel chooses). Several nodes on one host (127.0.0.2, 127.0.0.3,
// ...) are then told apart by source address, which is what per-address
// firewall rules and partition tests need; on a real host the kernel's
// choice is the right one and binding could pick an address behind NAT.
func SourceIP(advertiseAddr string) net.IP {
	host, _, err := net.SplitHostPort(advertiseAddr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil
	}
	return ip
}

// NewDialer returns a dialer whose connections come from
// SourceIP(advertiseAddr).
func NewDialer(advertiseAddr string, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if ip := SourceIP(advertiseAddr); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d
}
