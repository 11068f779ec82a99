package m3dbtest

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestM3DBSmoke proves the real-M3DB test infrastructure: a real etcd and
// a three-node m3dbnode v1.5.0 cluster (RF 3) on 127.0.31.x, two
// namespaces, series written over a range of timestamps through the nodes'
// own API (/writetagged on :9002, to every replica) and through the
// cluster API (:9003, replicated by M3DB), every datapoint read back from
// every node through /fetch, one node restarted, everything stopped and
// removed. It fails, never skips, when m3dbnode or etcd is missing.
func TestM3DBSmoke(t *testing.T) {
	t0 := time.Now()
	h := New(t)
	h.StartEtcd("etcd", "127.0.31.1")
	nodes := []struct{ name, ip string }{{"m3a", "127.0.31.2"}, {"m3b", "127.0.31.3"}, {"m3c", "127.0.31.4"}}
	for i, n := range nodes {
		h.StartNode(n.name, n.ip, i == 0)
	}
	h.InitCluster("metrics:12h", "events:24h:4h")
	t.Logf("etcd + 3 nodes started and cluster initialised in %s", time.Since(t0).Round(time.Millisecond))

	// Placement in etcd, as the plugin will read it.
	keys := h.Run("etcdctl", "get", "--prefix", "--keys-only", "_")
	for _, k := range []string{"_sd.placement/default_env/m3db", "_kv/default_env/m3db.node.namespaces"} {
		if !strings.Contains(keys, k) {
			t.Fatalf("etcd lacks %s; keys:\n%s", k, keys)
		}
	}

	// Writes: cold writes are off (M3's default), so every timestamp must
	// lie within the namespace's bufferPast (10 minutes) of now.
	now := time.Now().Unix()
	var stamps []int64
	for ts := now - 8*60; ts <= now; ts += 10 {
		stamps = append(stamps, ts)
	}
	type series struct{ ns, id string }
	want := map[series][]Datapoint{}
	tw := time.Now()
	writes := 0
	for _, ns := range []string{"metrics", "events"} {
		for i := range 3 {
			// Node API: written to each replica by us.
			s := series{ns, fmt.Sprintf("node-api-%d", i)}
			tags := []Tag{{"via", "node"}, {"n", fmt.Sprint(i)}}
			for k, ts := range stamps {
				dp := Datapoint{ts, float64(k) + float64(i)/4}
				for _, n := range nodes {
					if err := WriteTagged(n.ip+":9002", ns, s.id, tags, dp); err != nil {
						t.Fatal(err)
					}
					writes++
				}
				want[s] = append(want[s], dp)
			}
			// Cluster API: written once, M3DB replicates.
			s = series{ns, fmt.Sprintf("cluster-api-%d", i)}
			tags = []Tag{{"via", "cluster"}, {"n", fmt.Sprint(i)}}
			for k, ts := range stamps {
				dp := Datapoint{ts, -float64(k) - float64(i)/8}
				if err := WriteTagged(nodes[i].ip+":9003", ns, s.id, tags, dp); err != nil {
					t.Fatal(err)
				}
				writes++
				want[s] = append(want[s], dp)
			}
		}
	}
	t.Logf("%d writes (%d series × %d timestamps) in %s", writes, len(want), len(stamps), time.Since(tw).Round(time.Millisecond))

	// Too old for the buffer: refused for an existing series, as M3DB does
	// without cold writes. For a new series the node answers 200 and drops
	// the datapoint (writeNewSeriesAsync: the check runs after the answer).
	err := WriteTagged(nodes[0].ip+":9002", "metrics", "node-api-0", nil, Datapoint{now - 3600, 1})
	if err == nil || !strings.Contains(err.Error(), "too far in past") {
		t.Fatalf("a write an hour in the past: got %v, want 'datapoint too far in past'", err)
	}
	if err := WriteTagged(nodes[0].ip+":9002", "metrics", "too-old", nil, Datapoint{now - 3600, 1}); err != nil {
		t.Fatalf("an old write to a new series: %v (M3DB v1.5.0 accepts it, then drops it)", err)
	}

	check := func(nodeName, ip string) {
		t.Helper()
		for s, dps := range want {
			got, err := Fetch(ip+":9002", s.ns, s.id, now-600, now+60)
			if err != nil {
				t.Fatalf("%s: %v", nodeName, err)
			}
			if !reflect.DeepEqual(got, dps) {
				t.Fatalf("%s %s/%s: read %d datapoints, want %d\ngot  %v\nwant %v", nodeName, s.ns, s.id, len(got), len(dps), got, dps)
			}
		}
	}
	for _, n := range nodes {
		check(n.name, n.ip)
	}
	if got, err := Fetch(nodes[0].ip+":9002", "metrics", "too-old", now-7200, now+60); err != nil || len(got) != 0 {
		t.Fatalf("the dropped old datapoint: %v, %v", got, err)
	}
	// And once through the cluster API.
	got, err := Fetch(nodes[1].ip+":9003", "events", "cluster-api-2", now-600, now+60)
	if err != nil || !reflect.DeepEqual(got, want[series{"events", "cluster-api-2"}]) {
		t.Fatalf("cluster fetch: %v, %d datapoints", err, len(got))
	}
	t.Logf("every datapoint read back from every node")

	// Memory before the restart (the restarted node's peak starts anew).
	for _, name := range []string{"etcd", "m3a", "m3b", "m3c"} {
		rss, peak, err := Memory(h.PID(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: RSS %d MiB, peak %d MiB", name, rss, peak)
	}

	// A restarted node bootstraps from its own files (commit log,
	// snapshots) and serves every datapoint again.
	env := h.NodeEnv("m3c")
	if env["M3DB_NODE_HTTP"] != "127.0.31.4:9002" || env["M3DB_ETCD_ENDPOINTS"] != "127.0.31.1:2379" {
		t.Fatalf("env m3c: %v", env)
	}
	logs, _ := filepath.Glob(filepath.Join(env["M3DB_DATA_DIR"], "commitlogs", "commitlog-*.db"))
	if len(logs) == 0 {
		t.Fatalf("no commit logs under %s", env["M3DB_DATA_DIR"])
	}
	tr := time.Now()
	h.Stop("m3c")
	h.StartNode("m3c", "127.0.31.4", false)
	h.WaitBootstrapped("m3c")
	t.Logf("m3c stopped, restarted and bootstrapped in %s", time.Since(tr).Round(time.Millisecond))
	check("m3c (restarted)", "127.0.31.4")

	t.Log(strings.TrimSpace(h.Run("status")))
	t.Logf("smoke test body took %s (stop and clean follow)", time.Since(t0).Round(time.Millisecond))
}
