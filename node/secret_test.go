package node

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// TestLoadSecret: a key file wins over a password file, which wins over
// the environment; each is checked.
func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	k, err := WriteNewKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info.Mode(), err)
	}
	if _, err := WriteNewKeyFile(keyFile); err == nil {
		t.Error("a key file was overwritten")
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("hunter2\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == PasswordEnv {
				return v
			}
			return ""
		}
	}

	s, err := LoadSecret(pwFile, keyFile, env("from-env"))
	if err != nil || !bytes.Equal(s.KeyMaterial, k) || s.Password != nil {
		t.Errorf("key file first: %+v %v", s, err)
	}
	s, err = LoadSecret(pwFile, "", env("from-env"))
	if err != nil || string(s.Password) != "hunter2" || s.KeyMaterial != nil {
		t.Errorf("password file, its line end trimmed: %q %v", s.Password, err)
	}
	s, err = LoadSecret("", "", env("from-env"))
	if err != nil || string(s.Password) != "from-env" {
		t.Errorf("environment: %q %v", s.Password, err)
	}
	s, err = LoadSecret("", "", env(""))
	if err != nil || !s.IsZero() {
		t.Errorf("no source: %+v %v", s, err)
	}

	empty := filepath.Join(dir, "empty")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not hex"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ pw, key, want string }{
		{"", filepath.Join(dir, "nokey"), "key file"},
		{"", bad, bad},
		{filepath.Join(dir, "nopw"), "", "password file"},
		{empty, "", "is empty"},
	} {
		if _, err := LoadSecret(c.pw, c.key, env("")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadSecret(%q, %q): %v, want an error naming %q", c.pw, c.key, err, c.want)
		}
	}
	if _, err := WriteNewKeyFile(filepath.Join(dir, "no", "such", "dir")); err == nil {
		t.Error("a key file in a missing directory")
	}
}

// TestLoadGossipKey: none, or base64 of 16, 24 or 32 bytes.
func TestLoadGossipKey(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		f, err := os.CreateTemp(dir, "gk")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(content)
		f.Close()
		return f.Name()
	}
	if k, err := loadGossipKey(""); k != nil || err != nil {
		t.Errorf("no key file: %v %v", k, err)
	}
	for _, n := range []int{16, 24, 32} {
		raw := bytes.Repeat([]byte{7}, n)
		k, err := loadGossipKey(write(base64.StdEncoding.EncodeToString(raw) + "\n"))
		if err != nil || !bytes.Equal(k, raw) {
			t.Errorf("a %d-byte key: %v %v", n, k, err)
		}
	}
	for content, want := range map[string]string{
		"!!not base64!!": "not base64",
		base64.StdEncoding.EncodeToString(make([]byte, 10)): "10 bytes",
	} {
		if _, err := loadGossipKey(write(content)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
	if _, err := loadGossipKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "gossip key") {
		t.Errorf("a missing key file: %v", err)
	}
}

// TestPeersFile: saved peers are read back; a missing or garbled file
// is no peers.
func TestPeersFile(t *testing.T) {
	dir := t.TempDir()
	if p := loadPeers(dir); p != nil {
		t.Errorf("no file: %v", p)
	}
	if err := os.WriteFile(peersPath(dir), []byte(`["10.0.0.1:7302","10.0.0.2:7302"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := loadPeers(dir); len(p) != 2 || p[1] != "10.0.0.2:7302" {
		t.Errorf("saved peers: %v", p)
	}
	if err := os.WriteFile(peersPath(dir), []byte(`{garbage`), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := loadPeers(dir); len(p) != 0 {
		t.Errorf("a garbled file: %v", p)
	}
}

// TestRepositoryIdentity: members are compared by repository id (one
// that says none is taken at its word), and a member of another
// repository is logged once per id.
func TestRepositoryIdentity(t *testing.T) {
	logs := &recordingHandler{}
	c := &Cluster{repoID: "r1", log: slog.New(logs), refused: map[string]string{}}
	for _, m := range []struct {
		repo string
		same bool
	}{{"r1", true}, {"", true}, {"r2", false}} {
		if got := c.sameRepository(gossip.Member{Meta: gossip.Meta{RepoID: m.repo}}); got != m.same {
			t.Errorf("member of %q: same %v", m.repo, got)
		}
	}
	if !(&Cluster{}).sameRepository(gossip.Member{Meta: gossip.Meta{RepoID: "r2"}}) {
		t.Error("a node without a repository id refused a member")
	}
	m := gossip.Member{Meta: gossip.Meta{NodeID: "x", RepoID: "r2"}}
	c.refuseOtherRepository(m)
	c.refuseOtherRepository(m)
	if n := len(logs.messages()); n != 1 {
		t.Errorf("logged %d times for one member and id, want once", n)
	}
	m.RepoID = "r3"
	c.refuseOtherRepository(m)
	if n := len(logs.messages()); n != 2 {
		t.Errorf("a new repository id was not logged: %d", n)
	}
	if u := memberURL(gossip.Member{Meta: gossip.Meta{HTTPAddr: "h:1"}}); u != "http://h:1" {
		t.Errorf("member URL %q", u)
	}
	if u := memberURL(gossip.Member{Meta: gossip.Meta{HTTPAddr: "h:1", HTTPScheme: "https"}}); u != "https://h:1" {
		t.Errorf("member URL %q", u)
	}
}
