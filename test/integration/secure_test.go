package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/internal/testcert"
)

// newSecurity makes a CA, one certificate for every node and the client
// (IP SANs ips, default 127.0.0.1-127.0.0.9; server and client use), and two tokens.
func newSecurity(t *testing.T, ips ...net.IP) *security {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	if len(ips) == 0 { // the cluster helpers' 127.0.0.1-9
		for i := 1; i <= 9; i++ {
			ips = append(ips, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	certPEM, keyPEM := ca.Issue(t, "crayfish node", ips...)
	s := &security{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "node.pem"), keyFile: filepath.Join(dir, "node-key.pem"),
		adminTokenFile: filepath.Join(dir, "admin.token"), readTokenFile: filepath.Join(dir, "read.token"),
		gossipKeyFile: filepath.Join(dir, "gossip.key")}
	for p, b := range map[string][]byte{
		s.caFile:         ca.PEM,
		s.certFile:       certPEM,
		s.keyFile:        keyPEM,
		s.adminTokenFile: []byte("admin-token-0123456789abcdef\n"),
		s.readTokenFile:  []byte("read-token-0123456789abcdef\n"),
		s.gossipKeyFile:  []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) + "\n"),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	return s
}

// TestSecuredCluster: a three-node cluster with mutual TLS on the API,
// node-to-node calls and Raft, encrypted gossip, and bearer tokens, backs
// up and restores;
// requests without a token, with the read token on a write, over plain
// HTTP, or without a client certificate are refused.
func TestSecuredCluster(t *testing.T) {
	sec := newSecurity(t)
	c := startSecuredCluster(t, 3, "s", "", "", sec)
	fillRoots(t, c.agents, 1<<20)
	want := describeTree(t, c.agents[2].root)
	f := c.follower()
	op := f.backupWait()
	writeFile(t, filepath.Join(c.agents[2].root, "own", "s3.bin"), []byte("damaged"), 0o600)
	if res := f.cli("restore", op.BackupID, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	compareTrees(t, want, describeTree(t, c.agents[2].root))

	do := func(hc *http.Client, method, url, token string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(`{}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := f.url()
	read := readFileString(t, sec.readTokenFile)
	admin := readFileString(t, sec.adminTokenFile)
	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "GET", "/v1/backups", "", 401},
		{"read token reads", "GET", "/v1/backups", read, 200},
		{"read token cannot write", "POST", "/v1/backups", read, 403},
		{"read token cannot call nodes", "POST", "/internal/v1/jobs", read, 403},
		{"wrong token", "GET", "/v1/cluster", "admin-token-0123456789abcdeX", 401},
		{"admin reads the cluster", "GET", "/v1/cluster", admin, 200},
		{"health needs nothing", "GET", "/healthz", "", 200},
	} {
		if got := do(sec.client, tc.method, base+tc.path, tc.token); got != tc.want {
			t.Errorf("%s: %s %s -> %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if got := do(plain, "GET", "http://"+f.http+"/v1/cluster", admin); got == 200 {
		t.Error("plain HTTP answered")
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: sec.client.Transport.(*http.Transport).TLSClientConfig.RootCAs}}}
	if got := do(noCert, "GET", base+"/v1/cluster", admin); got != 0 {
		t.Errorf("a client without certificate got HTTP %d", got)
	}
	if res := f.cli("--token-file", sec.readTokenFile, "backup"); res.code == 0 {
		t.Error("a backup with the read token was started")
	}
}
