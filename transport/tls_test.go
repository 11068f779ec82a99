package transport

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/internal/testcert"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// nodeFiles writes a CA and a certificate issued by it for cn into dir.
func nodeFiles(t *testing.T, ca *testcert.CA, dir, cn string, mutual bool) TLSFiles {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := ca.Issue(t, cn)
	f := TLSFiles{
		CertFile:      filepath.Join(dir, "cert.pem"),
		KeyFile:       filepath.Join(dir, "key.pem"),
		CAFile:        filepath.Join(dir, "ca.pem"),
		VerifyClients: mutual,
	}
	writeFile(t, f.CertFile, certPEM)
	writeFile(t, f.KeyFile, keyPEM)
	writeFile(t, f.CAFile, ca.PEM)
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
	ca := testcert.NewCA(t)
	good := nodeFiles(t, ca, dir, "n1", true)
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not pem at all\n"))
	badCert := filepath.Join(dir, "badcert.pem")
	writeFile(t, badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}))
	otherCert, _ := ca.Issue(t, "other")
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
	ca := testcert.NewCA(t)
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
	ca := testcert.NewCA(t)
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
	ca := testcert.NewCA(t)
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

	certPEM, keyPEM := ca.Issue(t, "second")
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
	ca := testcert.NewCA(t)
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
