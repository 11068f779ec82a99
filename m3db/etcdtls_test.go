package m3db

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/internal/testcert"
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
	ip := "127.0.33.4"
	ca := testcert.NewCA(t)
	serverCert, serverKey := ca.Issue(t, "etcd", net.ParseIP(ip))
	clientCert, clientKey := ca.Issue(t, "crayfish")
	for name, b := range map[string][]byte{"ca.pem": ca.PEM, "server.pem": serverCert, "server-key.pem": serverKey,
		"client.pem": clientCert, "client-key.pem": clientKey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
