package m3db

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
	"github.com/crayfish-backup/crayfish/node/plugin"
	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// TestSnapshotRetriesAPlacementChange: a placement written between the
// etcd read and the end of the linking fails the snapshot naming the key
// (the step's retry takes a new cut); the next attempt succeeds and
// records the new revision. A real etcd; the node's health endpoint is a
// stand-in (no data files are involved).
func TestSnapshotRetriesAPlacementChange(t *testing.T) {
	h := m3dbtest.New(t)
	h.StartEtcd("etcd", "127.0.33.1")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.33.1:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	s := Driver{}.NewConfig().(*Settings)
	s.EtcdEndpoints, s.DataDir, s.InstanceID = []string{"127.0.33.1:2379"}, t.TempDir(), "m3a"
	s.ExtraKeys = []string{"_kv/default_env/extra/*", "_kv/default_env/missing"}
	placementOf := func(ids ...string) string {
		pl := &m3pb.Placement{Instances: map[string]*m3pb.Instance{}, ReplicaFactor: 1, NumShards: 1}
		for _, id := range ids {
			pl.Instances[id] = &m3pb.Instance{Id: id, Endpoint: id + ":9000", IsolationGroup: id, Zone: "embedded", Weight: 1}
		}
		b, err := m3pb.Marshal(pl)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	registry, err := m3pb.Marshal(&m3pb.Registry{Namespaces: map[string]*m3pb.NamespaceOptions{"metrics": {}}})
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := placementOf("m3a"), placementOf("m3a", "m3d")
	for k, v := range map[string]string{s.PlacementKey(): v1, s.NamespacesKey(): string(registry),
		"_kv/default_env/extra/a": "a", "_kv/default_env/extra/b": "b"} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"bootstrapped":true}`))
	}))
	defer health.Close()
	s.HealthURL = health.URL
	if err := s.Finish(plugin.Env{}); err != nil {
		t.Fatal(err)
	}
	pl, _ := Driver{}.Open(s, plugin.Env{})
	p := pl.(*nodePlugin)
	p.afterLink = func() {
		p.afterLink = nil                                             // once
		if _, err := cli.Put(ctx, s.PlacementKey(), v2); err != nil { // an instance added
			t.Error(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "tree")
	_, err = p.Snapshot(ctx, "op", dir)
	if !errors.Is(err, ErrChanged) || plugin.IsPermanent(err) || !strings.Contains(err.Error(), s.PlacementKey()) {
		t.Fatalf("a placement changed during the snapshot: %v, want a retryable ErrChanged naming the key", err)
	}
	os.RemoveAll(dir) // as the node does after a failed snapshot
	if _, err := p.Snapshot(ctx, "op", dir); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	var c EtcdCapture
	b, err := os.ReadFile(filepath.Join(dir, etcdFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range c.Keys {
		got[k.Key] = string(k.Value)
	}
	if got[s.PlacementKey()] != v2 || got["_kv/default_env/extra/b"] != "b" || len(got) != 4 {
		t.Fatalf("captured %v", got)
	}

	// A cluster without a placement is refused, naming the key.
	if _, err := cli.Delete(ctx, s.PlacementKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot(ctx, "op2", filepath.Join(t.TempDir(), "t")); err == nil || !strings.Contains(err.Error(), s.PlacementKey()) {
		t.Fatalf("no placement: %v", err)
	}
}
