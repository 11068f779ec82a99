package m3dbtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/m3db"
	"github.com/crayfish-backup/crayfish/m3db/fileset"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// TestM3DBPluginSnapshot takes the M3DB plugin's snapshot of a real node
// (etcd and one m3dbnode v1.5.0 on 127.0.32.x): the placement and the
// namespace registry read at one etcd revision, every complete and intact
// fileset hard-linked; then of a data dir of filesets written by M3's own
// writer, some damaged: only the intact ones are taken and each damaged
// one is named; then of the node stopped: refused before anything is
// linked.
func TestM3DBPluginSnapshot(t *testing.T) {
	h := New(t)
	h.StartEtcd("etcd", "127.0.32.1")
	h.StartNode("m3a", "127.0.32.2", true)
	h.InitCluster("metrics:12h")
	now := time.Now().Unix()
	for i := range 20 {
		if err := WriteTagged("127.0.32.2:9002", "metrics", "s1", []Tag{{"k", "v"}}, Datapoint{now - int64(i), float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	env := h.NodeEnv("m3a")
	settings := func(dataDir string) *m3db.Settings {
		s := m3db.Driver{}.NewConfig().(*m3db.Settings)
		s.EtcdEndpoints = strings.Split(env["M3DB_ETCD_ENDPOINTS"], ",")
		s.Env, s.InstanceID, s.DataDir = env["M3DB_ENV"], "m3a", dataDir
		s.HealthURL = "http://" + env["M3DB_NODE_HTTP"] + "/health"
		s.ExtraKeys = []string{"_kv/" + env["M3DB_ENV"] + "/*"}
		if err := s.Finish(plugin.Env{}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	snapshot := func(s *m3db.Settings) (string, plugin.Source, error) {
		p, err := m3db.Driver{}.Open(s, plugin.Env{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "tree")
		src, err := p.Snapshot(context.Background(), "op1", dir)
		return dir, src, err
	}

	// The live node.
	s := settings(env["M3DB_DATA_DIR"])
	dir, src, err := snapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	if src.Root != dir || !src.InPlace {
		t.Fatalf("source %+v", src)
	}
	var capture m3db.EtcdCapture
	readJSON(t, filepath.Join(dir, "m3db", "etcd.json"), &capture)
	keys := map[string]bool{}
	for _, k := range capture.Keys {
		keys[k.Key] = true
		if k.ModRevision > capture.Revision {
			t.Errorf("key %s: mod revision %d after the capture's %d", k.Key, k.ModRevision, capture.Revision)
		}
		if (k.Key == s.PlacementKey() || k.Key == s.NamespacesKey()) && len(k.Value) == 0 {
			t.Errorf("key %s captured empty", k.Key)
		}
	}
	if capture.Revision == 0 || !keys[s.PlacementKey()] || !keys[s.NamespacesKey()] {
		t.Fatalf("etcd capture at revision %d holds %v", capture.Revision, keys)
	}
	var meta m3db.NodeMeta
	if err := json.Unmarshal(src.Meta, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.InstanceID != "m3a" || meta.Revision != capture.Revision || meta.Filesets[fileset.Data] == 0 || meta.SkippedTotal != 0 || len(src.Warnings) != 0 {
		t.Fatalf("meta %+v, warnings %v", meta, src.Warnings)
	}
	taken := checkIntact(t, filepath.Join(dir, "files"))
	// The two highest-indexed commit logs (the one M3 writes and the
	// empty next one) are copies cut at a chunk boundary of M3's own
	// framing: whole, and not both empty.
	logs, _ := filepath.Glob(filepath.Join(dir, "files", "commitlogs", "commitlog-0-*.db"))
	if len(logs) < 2 {
		t.Fatalf("commit logs taken: %v", logs)
	}
	index := func(p string) int {
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "commitlog-0-"), ".db"))
		return n
	}
	slices.SortFunc(logs, func(a, b string) int { return index(a) - index(b) })
	var copied int64
	for _, name := range logs[len(logs)-2:] {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		whole, err := fileset.CompleteCommitLogLength(f, fi.Size())
		f.Close()
		if err != nil || whole != fi.Size() {
			t.Errorf("commit log copy %s: %d bytes, %d of them whole chunks (%v)", name, fi.Size(), whole, err)
		}
		copied += fi.Size()
	}
	if copied == 0 {
		t.Errorf("the open commit logs were copied empty: %v", logs)
	}
	// Hard links, not copies: the same inodes as the node's files.
	for _, f := range taken[:min(len(taken), 20)] {
		a, err1 := os.Stat(filepath.Join(dir, "files", f))
		b, err2 := os.Stat(filepath.Join(env["M3DB_DATA_DIR"], f))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s is not a hard link of the node's file (%v %v)", f, err1, err2)
		}
	}

	// Filesets from M3's own writer, some damaged.
	gen := t.TempDir()
	cmd := exec.Command(FilesetGen(t), "-dir", gen, "-ns", "metrics", "-shard", "3", "-block", "1700006400000000000",
		"-blocksize", "2h", "-series", "10", "-points", "10", "-snapshot", "-index", "-damage", "all")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("filesetgen: %v\n%s", err, stderr.String())
	}
	var manifest struct {
		Filesets []struct {
			Damage string `json:"damage"`
		} `json:"filesets"`
	}
	if err := json.Unmarshal(out, &manifest); err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for _, f := range manifest.Filesets {
		if f.Damage != "" {
			damaged++
		}
	}
	dir, src, err = snapshot(settings(gen))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(src.Meta, &meta); err != nil {
		t.Fatal(err)
	}
	if damaged == 0 || meta.SkippedTotal != damaged || len(src.Warnings) != damaged {
		t.Fatalf("%d damaged filesets written, %d skipped, warnings %v", damaged, meta.SkippedTotal, src.Warnings)
	}
	for _, w := range src.Warnings {
		if !strings.HasPrefix(w, "left out ") {
			t.Errorf("warning %q does not name what was left out", w)
		}
	}
	if len(checkIntact(t, filepath.Join(dir, "files"))) == 0 {
		t.Fatal("no intact fileset taken")
	}

	// The node down: refused, nothing linked.
	h.Stop("m3a")
	dir, _, err = snapshot(s)
	if !errors.Is(err, m3db.ErrUnavailable) || !plugin.IsPermanent(err) {
		t.Fatalf("snapshot of a stopped node: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused snapshot left %s (%v)", dir, err)
	}
}

// checkIntact scans a snapshot's files: every fileset must be complete and
// intact and no stray file taken. It returns the files.
func checkIntact(t *testing.T, root string) []string {
	t.Helper()
	rep, err := fileset.ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range rep.Filesets {
		if !f.OK() {
			t.Errorf("taken fileset %s is not intact: %v", f, f.Problem)
		}
		files = append(files, f.Files...)
	}
	if len(rep.Other) > 0 {
		t.Errorf("stray files taken: %v", rep.Other)
	}
	return files
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
