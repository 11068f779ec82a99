package m3db

import (
	"encoding/binary"
	"errors"
	"hash/adler32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

func TestSettingsFinish(t *testing.T) {
	s := Driver{}.NewConfig().(*Settings)
	if err := s.Finish(plugin.Env{}); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if s.PlacementKey() != "_sd.placement/default_env/m3db" || s.NamespacesKey() != "_kv/default_env/m3db.node.namespaces" {
		t.Errorf("keys %s %s", s.PlacementKey(), s.NamespacesKey())
	}
	for name, mutate := range map[string]func(*Settings){
		"no endpoints":      func(s *Settings) { s.EtcdEndpoints = nil },
		"no env":            func(s *Settings) { s.Env = "" },
		"relative data dir": func(s *Settings) { s.DataDir = "m3" },
		"no instance":       func(s *Settings) { s.InstanceID = "" },
		"cert without key":  func(s *Settings) { s.EtcdCertFile = "/c.pem" },
		"bad port":          func(s *Settings) { s.Port = 70000 },
		"empty extra key":   func(s *Settings) { s.ExtraKeys = []string{"*"} },
		"missing password":  func(s *Settings) { s.EtcdPasswordFile = "/nonexistent" },
	} {
		s := Driver{}.NewConfig().(*Settings)
		mutate(s)
		if err := s.Finish(plugin.Env{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCommitLogs: closed commit logs are linked; the two highest-indexed
// (the one M3 writes and the empty next one it keeps open to swap to)
// are copied up to their last whole chunk at the snapshot, so neither a
// chunk M3 was writing nor what it appends afterwards is in the backup.
func TestCommitLogs(t *testing.T) {
	data := t.TempDir()
	logs := filepath.Join(data, "commitlogs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	whole := string(commitLogChunk("first")) + string(commitLogChunk("second"))
	active := whole + string(commitLogChunk("being written"))[:9]
	for name, content := range map[string]string{"commitlog-0-1.db": "closed", "commitlog-0-2.db": active, "commitlog-0-3.db": "", "notes.txt": "x"} {
		if err := os.WriteFile(filepath.Join(logs, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := &nodePlugin{s: Settings{DataDir: data, IncludeCommit: true}}
	dst := filepath.Join(t.TempDir(), "files")
	if err := p.linkTree(dst); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(logs, "commitlog-0-2.db"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" and appended later")
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(dst, "commitlogs", "commitlog-0-2.db")); string(b) != whole {
		t.Errorf("the active log was not copied up to its whole chunks: %q", b)
	}
	a, _ := os.Stat(filepath.Join(dst, "commitlogs", "commitlog-0-1.db"))
	b, _ := os.Stat(filepath.Join(logs, "commitlog-0-1.db"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("a closed log was not hard-linked")
	}
	a, _ = os.Stat(filepath.Join(dst, "commitlogs", "commitlog-0-3.db"))
	b, _ = os.Stat(filepath.Join(logs, "commitlog-0-3.db"))
	if a == nil || b == nil || os.SameFile(a, b) || a.Size() != 0 {
		t.Error("the next, empty log was not copied")
	}
	if _, err := os.Stat(filepath.Join(dst, "commitlogs", "notes.txt")); !os.IsNotExist(err) {
		t.Error("a file that is no commit log was taken")
	}
	for name, want := range map[string]int{"commitlog-0-17.db": 17, "commitlog-1-2.db": -1, "commitlog-0-x.db": -1} {
		n, ok := commitLogIndex(name)
		if (want < 0) == ok || (ok && n != want) {
			t.Errorf("commitLogIndex(%s) = %d, %v", name, n, ok)
		}
	}
}

func TestDescribe(t *testing.T) {
	row, err := Driver{}.Describe([]byte(`{"instance_id":"m3a","revision":42,"filesets":{"index":2,"data":7},"skipped_total":1}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"M3DB INSTANCE": "m3a", "ETCD REVISION": "42", "FILESETS": "data 7, index 2", "SKIPPED": "1"}
	for _, c := range (Driver{}).DescribeColumns() {
		if row[c] != want[c] {
			t.Errorf("%s = %q, want %q", c, row[c], want[c])
		}
	}
	if _, err := (Driver{}).Describe([]byte(`{"filesets":7}`)); err == nil {
		t.Error("hostile metadata described")
	}
}

// TestStage: the files step restores the backed-up files/ tree into the
// data dir, limited to M3's directories (all of them, or the selected
// namespaces' parts); the etcd step stages the capture; the others
// download nothing; a hostile namespace name is refused.
func TestStage(t *testing.T) {
	s := Driver{}.NewConfig().(*Settings)
	s.DataDir = "/srv/m3db"
	p, err := Driver{}.Open(s, plugin.Env{})
	if err != nil {
		t.Fatal(err)
	}
	stage := func(a Action) (plugin.Stage, error) {
		return p.Stage(plugin.RestoreStep{Input: mustJSON(a)})
	}
	st, err := stage(Action{Do: actFiles})
	if err != nil || !st.Needed || st.From != "files" || st.Into != "/srv/m3db" || st.KeepExtra ||
		strings.Join(st.Include, " ") != "data index snapshots commitlogs" {
		t.Errorf("full files stage %+v, %v", st, err)
	}
	st, err = stage(Action{Do: actFiles, Namespaces: []string{"metrics"}})
	if err != nil || strings.Join(st.Include, " ") != "data/metrics index/data/metrics snapshots/metrics index/snapshots/metrics" {
		t.Errorf("namespace files stage %+v, %v", st, err)
	}
	st, err = stage(Action{Do: actEtcd})
	if err != nil || !st.Needed || st.Into != "" || strings.Join(st.Include, " ") != "m3db/etcd.json" {
		t.Errorf("etcd stage %+v, %v", st, err)
	}
	for _, do := range []string{actStop, actStart, actCheck} {
		if st, err := stage(Action{Do: do}); err != nil || st.Needed {
			t.Errorf("%s stage %+v, %v", do, st, err)
		}
	}
	for _, ns := range []string{"../x", "a/b", "*", ""} {
		if _, err := stage(Action{Do: actFiles, Namespaces: []string{ns}}); !errors.Is(err, plugin.ErrInvalidMeta) || !plugin.IsPermanent(err) {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
	if _, err := p.Stage(plugin.RestoreStep{Input: []byte(`{"do":"dance"}`)}); !errors.Is(err, plugin.ErrBadRequest) {
		t.Errorf("unknown action: %v", err)
	}
}

// commitLogChunk frames data as M3's commit log writer does: size,
// adler32 of the size, adler32 of the data (little-endian), data.
func commitLogChunk(data string) []byte {
	h := make([]byte, 12)
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[4:8], adler32.Checksum(h[0:4]))
	binary.LittleEndian.PutUint32(h[8:12], adler32.Checksum([]byte(data)))
	return append(h, data...)
}
