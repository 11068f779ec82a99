package m3db

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// TestEtcdTLS: a real etcd serving clients over mutual TLS; the capture
// works with m3db_etcd_ca_file, _cert_file and _key_file, and fails
// without the client certificate.
func TestEtcdTLS(t *testing.T) {
	m3dbtest.New(t) // fails loudly unless etcd is installed
	out, _ := exec.Command(m3dbtest.Script(), "check").CombinedOutput()
	m := regexp.MustCompile(`etcd [0-9.]+: (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no etcd binary in:\n%s", out)
	}
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	ip := "127.0.33.4"
	etcd := exec.Command(string(m[1]), "--name", "tls", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "https://"+ip+":2379", "--advertise-client-urls", "https://"+ip+":2379",
		"--listen-peer-urls", "http://"+ip+":2380", "--initial-advertise-peer-urls", "http://"+ip+":2380",
		"--initial-cluster", "tls=http://"+ip+":2380",
		"--cert-file", filepath.Join(dir, "server.pem"), "--key-file", filepath.Join(dir, "server-key.pem"),
		"--client-cert-auth", "--trusted-ca-file", filepath.Join(dir, "ca.pem"))
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	etcd.Stdout, etcd.Stderr = logf, logf
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Process.Kill(); etcd.Wait() })

	s := Driver{}.NewConfig().(*Settings)
	s.EtcdEndpoints, s.DataDir, s.InstanceID = []string{"https://" + ip + ":2379"}, dir, "m3a"
	s.EtcdCAFile, s.EtcdCertFile, s.EtcdKeyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := s.Finish(plugin.Env{}); err != nil {
		t.Fatal(err)
	}
	put := func() error {
		cli, err := s.etcdClient()
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for k, v := range map[string]string{s.PlacementKey(): "p", s.NamespacesKey(): "n"} {
			if _, err := cli.Put(ctx, k, v); err != nil {
				return err
			}
		}
		_, err = s.captureEtcd(ctx, cli)
		return err
	}
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if lastErr = put(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
		t.Fatalf("capture over mutual TLS: %v\n%s", lastErr, log)
	}
	// Without the client certificate etcd refuses the connection.
	s.EtcdCertFile, s.EtcdKeyFile = "", ""
	if err := put(); err == nil {
		t.Fatal("etcd took a client without a certificate")
	}
}

// newCert writes name.pem and name-key.pem: a CA when parent is nil, else
// a certificate for 127.0.33.4 signed by it, for server and client use.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.33.4")}}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{name + ".pem": {Type: "CERTIFICATE", Bytes: der}, name + "-key.pem": {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
