package node

import (
	"fmt"
	"net"
	"strings"
)

// checkExposure refuses listeners on addresses other machines can reach
// when nothing guards them, unless the operator said insecure: an open
// HTTP listener lets anyone start restores (the internal API shares it),
// an open Raft port lets anyone append to the log, open gossip lets
// anyone join. HTTP is guarded by tokens or mutual TLS, Raft only by
// mutual TLS (it carries no tokens), gossip by its encryption key.
func (c *Config) checkExposure() error {
	if c.Insecure {
		return nil
	}
	mtls := c.TLSCertFile != "" && c.TLSCAFile != "" && c.TLSVerifyClients
	var open []string
	if !loopbackAddr(c.HTTPAddr) && c.APITokenFile == "" && !mtls {
		open = append(open, fmt.Sprintf("http_addr %s (set api_token_file, or tls_cert_file, tls_key_file, tls_ca_file and tls_verify_clients)", c.HTTPAddr))
	}
	if !loopbackAddr(c.RaftAddr) && !mtls {
		open = append(open, fmt.Sprintf("raft_addr %s (Raft takes no tokens: set tls_cert_file, tls_key_file, tls_ca_file and tls_verify_clients)", c.RaftAddr))
	}
	if !loopbackAddr(c.GossipAddr) && c.GossipKeyFile == "" {
		open = append(open, fmt.Sprintf("gossip_addr %s (set gossip_key_file)", c.GossipAddr))
	}
	if len(open) == 0 {
		return nil
	}
	return fmt.Errorf("config: unguarded listeners on non-loopback addresses: %s; or set insecure (--insecure) if this network is trusted", strings.Join(open, "; "))
}

// loopbackAddr reports whether a listen address ("host:port") binds only
// the loopback interface. An empty host or 0.0.0.0 binds every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
