package m3db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
	"github.com/crayfish-backup/crayfish/node/plugin"
	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// testPlacement is RF 3 over the given instances (port 9000, one
// isolation group each), four shards each; the last instance's shards
// were streamed from the first.
func testPlacement(t *testing.T, port int, ids ...string) *m3pb.Placement {
	t.Helper()
	p := &m3pb.Placement{Instances: map[string]*m3pb.Instance{}, ReplicaFactor: 3, NumShards: 4, IsSharded: true}
	for i, id := range ids {
		in := &m3pb.Instance{Id: id, Endpoint: fmt.Sprintf("%s:%d", id, port), Hostname: id, Port: uint32(port),
			IsolationGroup: "g-" + id, Zone: "embedded", Weight: 1}
		for s := range 4 {
			sh := &m3pb.Shard{Id: uint32(s), State: m3pb.ShardState_AVAILABLE}
			if i == len(ids)-1 {
				sh.SourceId = ids[0]
			}
			in.Shards = append(in.Shards, sh)
		}
		p.Instances[id] = in
	}
	return p
}

// TestEtcdRestore writes restores' etcd transactions into a real etcd:
// a full restore onto new identities (placement rewritten, registry and
// extra keys as backed up, keys the backup lacks under an extra prefix
// deleted, a repeat changing nothing), a namespace restore (only the
// selected entry replaced, the placement kept), a single-node restore
// (one instance moved, a repeat a no-op), and refusals.
func TestEtcdRestore(t *testing.T) {
	h := m3dbtest.New(t)
	h.StartEtcd("etcd", "127.0.33.2")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.33.2:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	s := Driver{}.NewConfig().(*Settings)
	s.EtcdEndpoints, s.DataDir, s.InstanceID = []string{"127.0.33.2:2379"}, t.TempDir(), "m3a"
	s.ExtraKeys = []string{"_kv/default_env/extra/*"}
	if err := s.Finish(plugin.Env{}); err != nil {
		t.Fatal(err)
	}
	pl, _ := Driver{}.Open(s, plugin.Env{})
	p := pl.(*nodePlugin)
	enc := func(m proto.Message) []byte {
		b, err := m3pb.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ret := func(h int64) *m3pb.NamespaceOptions {
		return &m3pb.NamespaceOptions{RetentionOptions: &m3pb.RetentionOptions{RetentionPeriodNanos: h * 3600e9}}
	}
	put := func(k string, v []byte) {
		if _, err := cli.Put(ctx, k, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(k string) []byte {
		resp, err := cli.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		return resp.Kvs[0].Value
	}
	// The backup: m3a, m3b, m3c; metrics (12h) and events (24h); two
	// extra keys.
	backupPlacement := testPlacement(t, 9000, "m3a", "m3b", "m3c")
	backupRegistry := &m3pb.Registry{Namespaces: map[string]*m3pb.NamespaceOptions{"metrics": ret(12), "events": ret(24)}}
	capture := EtcdCapture{Revision: 7, Keys: []EtcdKey{
		{Key: s.PlacementKey(), Value: enc(backupPlacement)}, {Key: s.NamespacesKey(), Value: enc(backupRegistry)},
		{Key: "_kv/default_env/extra/a", Value: []byte("a at the backup")}, {Key: "_kv/default_env/extra/b", Value: []byte("b")}}}
	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, etcdFile), capture); err != nil {
		t.Fatal(err)
	}
	stopped := func(node string, id identity) plugin.StepResult {
		b, _ := json.Marshal(stopResult{Identity: &id})
		return plugin.StepResult{Node: node, Result: b}
	}
	earlier := []plugin.StepResult{
		stopped("x", identity{ID: "m3x", Endpoint: "10.0.0.1:9100", DebugPort: 9104, IsolationGroup: "gx", Zone: "z1"}),
		stopped("y", identity{ID: "m3y", Endpoint: "10.0.0.2:9100", DebugPort: 9104, IsolationGroup: "gy", Zone: "z1"}),
		{Node: "x", Result: json.RawMessage(`{"namespaces":{}}`)}, // another step's result is ignored
		stopped("z", identity{ID: "m3z", Endpoint: "10.0.0.3:9100", DebugPort: 9104, IsolationGroup: "gz", Zone: "z1"}),
	}
	full := Action{Do: actEtcd, Instances: map[string]string{"x": "m3a", "y": "m3b", "z": "m3c"}}
	step := plugin.RestoreStep{Earlier: earlier}

	// The current etcd: something else entirely, and a key under the extra
	// prefix that the backup lacks.
	put(s.PlacementKey(), enc(testPlacement(t, 9000, "old1", "old2", "old3")))
	put(s.NamespacesKey(), enc(&m3pb.Registry{Namespaces: map[string]*m3pb.NamespaceOptions{"other": ret(1)}}))
	put("_kv/default_env/extra/a", []byte("a now"))
	put("_kv/default_env/extra/z", []byte("z, not in the backup"))
	put("_kv/default_env/unrelated", []byte("kept"))

	for attempt := range 2 { // a repeat writes the same
		if err := p.restoreEtcd(ctx, full, step, dir); err != nil {
			t.Fatalf("full restore (attempt %d): %v", attempt+1, err)
		}
		got, err := m3pb.UnmarshalPlacement(get(s.PlacementKey()))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetInstances()) != 3 {
			t.Fatalf("restored placement: %v", got)
		}
		for _, id := range []string{"m3x", "m3y", "m3z"} {
			in := got.GetInstances()[id]
			if in == nil || !strings.HasSuffix(in.GetEndpoint(), ":9100") || in.GetPort() != 9100 || in.GetMetadata().GetDebugPort() != 9104 ||
				in.GetHostname() == "" || len(in.GetShards()) != 4 {
				t.Fatalf("instance %s: %v", id, in)
			}
		}
		if src := got.GetInstances()["m3z"].GetShards()[0].GetSourceId(); src != "m3x" {
			t.Errorf("m3z's shard source %q, want m3x (m3a remapped)", src)
		}
		if string(get(s.NamespacesKey())) != string(enc(backupRegistry)) {
			t.Errorf("registry not the backed-up one")
		}
		if string(get("_kv/default_env/extra/a")) != "a at the backup" || string(get("_kv/default_env/extra/b")) != "b" ||
			get("_kv/default_env/extra/z") != nil || string(get("_kv/default_env/unrelated")) != "kept" {
			t.Errorf("extra keys: a=%q b=%q z=%q unrelated=%q", get("_kv/default_env/extra/a"), get("_kv/default_env/extra/b"),
				get("_kv/default_env/extra/z"), get("_kv/default_env/unrelated"))
		}
	}

	// A namespace restore: metrics back from the backup, "other" kept,
	// events not touched, the current placement kept.
	placementBefore := get(s.PlacementKey())
	put(s.NamespacesKey(), enc(&m3pb.Registry{Namespaces: map[string]*m3pb.NamespaceOptions{"other": ret(1), "events": ret(48)}}))
	sel := full
	sel.Namespaces = []string{"metrics"}
	if err := p.restoreEtcd(ctx, sel, step, dir); err != nil {
		t.Fatal(err)
	}
	reg, err := m3pb.UnmarshalRegistry(get(s.NamespacesKey()))
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.GetNamespaces()) != 3 || reg.GetNamespaces()["metrics"].GetRetentionOptions().GetRetentionPeriodNanos() != 12*3600e9 ||
		reg.GetNamespaces()["events"].GetRetentionOptions().GetRetentionPeriodNanos() != 48*3600e9 {
		t.Errorf("registry after a namespace restore: %v", reg)
	}
	if string(get(s.PlacementKey())) != string(placementBefore) {
		t.Errorf("a namespace restore changed the placement")
	}

	// A single-node restore: m3y's place taken by m3w on a new endpoint.
	single := Action{Do: actEtcd, Single: true, Instances: map[string]string{"y": "m3y"}}
	w := plugin.RestoreStep{Earlier: []plugin.StepResult{stopped("y", identity{ID: "m3w", Endpoint: "10.0.0.9:9200", IsolationGroup: "gy", Zone: "z1"})}}
	for attempt := range 2 {
		if err := p.restoreEtcd(ctx, single, w, dir); err != nil {
			t.Fatalf("single-node restore (attempt %d): %v", attempt+1, err)
		}
		got, _ := m3pb.UnmarshalPlacement(get(s.PlacementKey()))
		if got.GetInstances()["m3y"] != nil || got.GetInstances()["m3w"].GetEndpoint() != "10.0.0.9:9200" || len(got.GetInstances()) != 3 ||
			got.GetInstances()["m3x"].GetEndpoint() != "10.0.0.1:9100" {
			t.Fatalf("after a single-node restore: %v", got)
		}
	}
	// Refusals: a node that reported no identity; an instance the current
	// placement lacks; no placement at all.
	if err := p.restoreEtcd(ctx, full, plugin.RestoreStep{Earlier: earlier[:2]}, dir); !errors.Is(err, ErrEtcdRestore) || !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "node z") {
		t.Errorf("a node without identity: %v", err)
	}
	gone := Action{Do: actEtcd, Single: true, Instances: map[string]string{"y": "m3q"}}
	v := plugin.RestoreStep{Earlier: []plugin.StepResult{stopped("y", identity{ID: "m3v", Endpoint: "10.0.0.8:9200", IsolationGroup: "gy", Zone: "z1"})}}
	if err := p.restoreEtcd(ctx, gone, v, dir); !errors.Is(err, ErrEtcdRestore) || !strings.Contains(err.Error(), "m3q") {
		t.Errorf("an instance not in the placement: %v", err)
	}
	// A capture holding a key outside m3db_extra_keys (damaged or
	// hostile) is refused before anything is written.
	hostile := capture
	hostile.Keys = append(append([]EtcdKey(nil), capture.Keys...), EtcdKey{Key: "/registry/secrets/admin", Value: []byte("x")})
	hdir := t.TempDir()
	if err := writeJSON(filepath.Join(hdir, etcdFile), hostile); err != nil {
		t.Fatal(err)
	}
	placementNow := get(s.PlacementKey())
	if err := p.restoreEtcd(ctx, full, step, hdir); !errors.Is(err, ErrEtcdRestore) || !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "/registry/secrets/admin") {
		t.Errorf("a capture with a foreign key: %v", err)
	}
	if get("/registry/secrets/admin") != nil || string(get(s.PlacementKey())) != string(placementNow) {
		t.Errorf("a refused restore wrote to etcd")
	}
	if _, err := cli.Delete(ctx, s.PlacementKey()); err != nil {
		t.Fatal(err)
	}
	if err := p.restoreEtcd(ctx, single, w, dir); !errors.Is(err, ErrEtcdRestore) || !strings.Contains(err.Error(), "no placement") {
		t.Errorf("a single-node restore without a placement: %v", err)
	}
}

// TestEtcdAuth: with etcd's authentication on, the capture and the
// restore's transaction work with m3db_etcd_username and the password
// file, and a wrong password is refused with etcd's reason.
func TestEtcdAuth(t *testing.T) {
	h := m3dbtest.New(t)
	h.StartEtcd("etcd", "127.0.33.3")
	ctx := context.Background()
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.33.3:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := Driver{}.NewConfig().(*Settings)
	s.EtcdEndpoints, s.DataDir, s.InstanceID = []string{"127.0.33.3:2379"}, t.TempDir(), "m3a"
	for k, v := range map[string]string{s.PlacementKey(): "p", s.NamespacesKey(): "n"} {
		if _, err := root.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "s3cret"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	capture := func(pw string) (EtcdCapture, error) {
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.EtcdUsername, s.EtcdPasswordFile = "root", pwFile
		if err := s.Finish(plugin.Env{}); err != nil {
			t.Fatal(err)
		}
		cli, err := s.etcdClient()
		if err != nil {
			return EtcdCapture{}, err
		}
		defer cli.Close()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return s.captureEtcd(cctx, cli)
	}
	c, err := capture("s3cret")
	if err != nil || len(c.Keys) != 2 {
		t.Fatalf("capture with the password: %+v, %v", c, err)
	}
	if _, err := capture("wrong"); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("capture with a wrong password: %v", err)
	}
}
