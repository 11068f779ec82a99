package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority generated per test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "crayfish test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for 127.0.0.1 / localhost,
// usable as both server and client certificate, as a node's is.
func (ca *testCA) issue(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// nodeFiles writes a CA and a certificate issued by it for cn into dir.
func nodeFiles(t *testing.T, ca *testCA, dir, cn string, mutual bool) TLSFiles {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := ca.issue(t, cn)
	f := TLSFiles{
		CertFile:      filepath.Join(dir, "cert.pem"),
		KeyFile:       filepath.Join(dir, "key.pem"),
		CAFile:        filepath.Join(dir, "ca.pem"),
		VerifyClients: mutual,
	}
	writeFile(t, f.CertFile, certPEM)
	writeFile(t, f.KeyFile, keyPEM)
	writeFile(t, f.CAFile, ca.pem)
	return f
}

func TestTLSFilesEnabled(t *testing.T) {
	if (TLSFiles{}).Enabled() {
		t.Error("zero TLSFiles is enabled")
	}
	for _, f := range []TLSFiles{{CertFile: "c"}, {KeyFile: "k"}, {CAFile: "ca"}, {VerifyClients: true}} {
		if !f.Enabled() {
			t.Errorf("%+v not enabled", f)
		}
	}
}

func TestTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	good := nodeFiles(t, ca, dir, "n1", true)
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not pem at all\n"))
	badCert := filepath.Join(dir, "badcert.pem")
	writeFile(t, badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}))
	otherCert, _ := ca.issue(t, "other")
	otherCertFile := filepath.Join(dir, "other.pem")
	writeFile(t, otherCertFile, otherCert)
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		f      TLSFiles
		server bool // ServerConfig, else ClientConfig
		want   string
	}{
		{"cert without key", TLSFiles{CertFile: good.CertFile}, true, "without a key file"},
		{"key without cert", TLSFiles{KeyFile: good.KeyFile}, false, "without a certificate file"},
		{"verify clients without CA", TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, VerifyClients: true}, true, "needs a CA file"},
		{"verify clients without cert", TLSFiles{CAFile: good.CAFile, VerifyClients: true}, false, "needs a certificate"},
		{"server without cert", TLSFiles{CAFile: good.CAFile}, true, "needs a certificate file"},
		{"missing cert", TLSFiles{CertFile: missing, KeyFile: good.KeyFile}, true, missing},
		{"missing key", TLSFiles{CertFile: good.CertFile, KeyFile: missing}, true, missing},
		{"garbage cert", TLSFiles{CertFile: garbage, KeyFile: good.KeyFile}, true, garbage},
		{"mismatched key", TLSFiles{CertFile: otherCertFile, KeyFile: good.KeyFile}, true, otherCertFile},
		{"missing CA", TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: missing, VerifyClients: true}, true, missing},
		{"missing CA client", TLSFiles{CAFile: missing}, false, missing},
		{"CA without PEM", TLSFiles{CAFile: garbage}, false, "no PEM certificate"},
		{"CA unparseable", TLSFiles{CAFile: badCert}, false, badCert},
		{"missing client cert", TLSFiles{CertFile: missing, KeyFile: good.KeyFile, CAFile: good.CAFile, VerifyClients: true}, false, missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.server {
				_, err = tt.f.ServerConfig()
			} else {
				_, err = tt.f.ClientConfig()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrTLSConfig) {
				t.Errorf("error %q does not wrap ErrTLSConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}

	_, err := TLSFiles{CertFile: missing, KeyFile: good.KeyFile}.ServerConfig()
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file error %q does not wrap os.ErrNotExist", err)
	}
}

func TestTLSConfigs(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	f := nodeFiles(t, ca, dir, "n1", true)

	srv, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion != tls.VersionTLS12 || srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.ClientCAs == nil {
		t.Errorf("server config: min %x, client auth %v, CAs %v", srv.MinVersion, srv.ClientAuth, srv.ClientCAs)
	}
	cli, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cli.MinVersion != tls.VersionTLS12 || cli.RootCAs == nil || cli.GetClientCertificate == nil || cli.ServerName != "" {
		t.Errorf("client config: %+v", cli)
	}

	// Without VerifyClients: no client auth, and the client presents nothing.
	f.VerifyClients = false
	srv, err = f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if srv.ClientAuth != tls.NoClientCert {
		t.Errorf("server asks for client certs without VerifyClients: %v", srv.ClientAuth)
	}
	cli, err = TLSFiles{}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cli.RootCAs != nil || cli.GetClientCertificate != nil {
		t.Error("client config without files should use the system pool and no client certificate")
	}
}

// TestTLSHandshake runs a real mutual handshake through the configs.
func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t)
	srvFiles := nodeFiles(t, ca, filepath.Join(t.TempDir(), "srv"), "server", true)
	cliFiles := nodeFiles(t, ca, filepath.Join(t.TempDir(), "cli"), "client", true)
	srv, err := srvFiles.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := cliFiles.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
		_, _ = io.Copy(io.Discard, c)
	}()

	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-peer; got != "client" {
		t.Errorf("server saw client %q", got)
	}
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "server" {
		t.Errorf("client saw server %q", got)
	}
}

// TestCertReload rotates the key pair on disk and checks that handshakes
// pick it up after the check interval, and that a half-written rotation
// keeps the old pair.
func TestCertReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	f := nodeFiles(t, ca, dir, "first", false)
	r, err := newCertReloader(f.CertFile, f.KeyFile, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	cn := func() string {
		t.Helper()
		return r.certificate().Leaf.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("CN %q", got)
	}

	certPEM, keyPEM := ca.issue(t, "second")
	future := time.Now().Add(time.Minute)
	// Half a rotation: the new certificate with the old key.
	writeFile(t, f.CertFile, certPEM)
	if err := os.Chtimes(f.CertFile, future, future); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "first" {
		t.Errorf("reloaded before the interval: CN %q", got)
	}
	now = now.Add(6 * time.Second)
	if got := cn(); got != "first" {
		t.Errorf("half-rotated pair: CN %q, want the old pair kept", got)
	}
	if r.lastErr == nil || !strings.Contains(r.lastErr.Error(), f.CertFile) {
		t.Errorf("failed reload error: %v", r.lastErr)
	}

	// The key follows.
	writeFile(t, f.KeyFile, keyPEM)
	if err := os.Chtimes(f.KeyFile, future, future); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Second)
	if got := cn(); got != "second" {
		t.Errorf("after rotation: CN %q", got)
	}
	if r.lastErr != nil {
		t.Errorf("reload error: %v", r.lastErr)
	}

	// Unchanged files: the same pair, not reparsed.
	before := r.certificate()
	now = now.Add(6 * time.Second)
	if r.certificate() != before {
		t.Error("unchanged files reloaded")
	}

	// Files gone: keep serving the last good pair.
	if err := os.Remove(f.KeyFile); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Second)
	if got := cn(); got != "second" {
		t.Errorf("after key removal: CN %q", got)
	}
}

// TestConfigsServeTheCertificate checks the wiring of both callbacks to
// the reloader (reloading itself is TestCertReload's, with a fake clock).
func TestConfigsServeTheCertificate(t *testing.T) {
	ca := newTestCA(t)
	f := nodeFiles(t, ca, t.TempDir(), "node", true)
	srv, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := srv.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c.Leaf.Subject.CommonName != "node" {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}
	cli, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err = cli.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || c.Leaf.Subject.CommonName != "node" {
		t.Fatalf("GetClientCertificate: %v, %v", c, err)
	}
}
