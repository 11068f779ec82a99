package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestBackupIDsSortInStartOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 50 {
		// Same second, later starts; op ids chosen so their hashes do not sort in order.
		ids = append(ids, newBackupID(string(rune('z'-i%26))+"op", t0.Add(time.Duration(i)*1500*time.Microsecond)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("backup ids do not sort in start order: %v", ids)
	}
	for _, id := range ids {
		if !storage.ValidBackupID(id) {
			t.Fatalf("generated invalid backup id %q", id)
		}
	}
	if a, b := newBackupID("x", t0), newBackupID("x", t0.Add(time.Nanosecond)); a != b {
		t.Fatalf("backup id depends on more than (op id, time to the µs): %s %s", a, b)
	}
	if a, b := newBackupID("x", t0), newBackupID("y", t0); a == b {
		t.Fatalf("different operations at the same time got the same backup id %s", a)
	}
}

func TestCassandraRestorePlans(t *testing.T) {
	assign := map[string]RestoreInput{"n2": {SourceNode: "b2"}, "n1": {SourceNode: "b1"}}
	describe := func(steps []fsm.Step) []string {
		var out []string
		for _, s := range steps {
			if s.Name != StepRestore {
				out = append(out, s.Name)
				continue
			}
			var in RestoreInput
			if err := json.Unmarshal(s.Input, &in); err != nil {
				t.Fatal(err)
			}
			var a cassandra.RestoreAction
			if in.Cleanup {
				a.Action = "cleanup"
			} else if err := json.Unmarshal(in.Plugin, &a); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s:%s<-%s@%d", a.Action, s.Node, in.SourceNode, s.Phase))
		}
		return out
	}
	full := describe(cassandraRestorePlan(assign, nil, false))
	want := []string{"lock",
		"stage:n1<-b1@4", "stage:n2<-b2@4", "reset:n1<-b1@10", "reset:n2<-b2@10",
		"start:n1<-b1@11", "start:n2<-b2@12", "schema:n1<-b1@13", "load:n1<-b1@16", "load:n2<-b2@16",
		"report:n1<-b1@0", "report:n2<-b2@0", "cleanup:n1<-b1@17", "cleanup:n2<-b2@17", "unlock"}
	if !slices.Equal(full, want) {
		t.Fatalf("full restore plan:\n%v\nwant\n%v", full, want)
	}
	tables := describe(cassandraRestorePlan(assign, []string{"ks.t"}, false))
	// Nothing is truncated before every node has staged and checked.
	want = []string{"lock", "stage:n1<-b1@4", "stage:n2<-b2@4", "schema:n1<-b1@13", "check:n1<-b1@14", "check:n2<-b2@14",
		"truncate:n1<-b1@15", "import:n1<-b1@16", "import:n2<-b2@16",
		"report:n1<-b1@0", "report:n2<-b2@0", "cleanup:n1<-b1@17", "cleanup:n2<-b2@17", "unlock"}
	if !slices.Equal(tables, want) {
		t.Fatalf("table restore plan:\n%v\nwant\n%v", tables, want)
	}
	// Every node's report runs, in its own phase, even after a failure.
	for _, st := range cassandraRestorePlan(assign, nil, false) {
		var in RestoreInput
		var a cassandra.RestoreAction
		_ = json.Unmarshal(st.Input, &in)
		_ = json.Unmarshal(in.Plugin, &a)
		if a.Action == cassandra.ActionReport && (!st.Always || st.Phase != 0) {
			t.Fatalf("report step %+v", st)
		}
	}
	one := describe(cassandraRestorePlan(map[string]RestoreInput{"n2": {SourceNode: "b2"}}, nil, true))
	want = []string{"lock", "node:n2<-b2@4", "cleanup:n2<-b2@17", "unlock"}
	if !slices.Equal(one, want) {
		t.Fatalf("node restore plan: %v", one)
	}
	// A cluster of one starts its only node once.
	single := describe(cassandraRestorePlan(map[string]RestoreInput{"n1": {SourceNode: "b1"}}, nil, false))
	if n := slices.Index(single, "start:n1<-b1@11"); n < 0 || slices.Contains(single[n+1:], "start:n1<-b1@12") {
		t.Fatalf("one-node full restore: %v", single)
	}
}

func TestCassandraPlanRefusesBadRequests(t *testing.T) {
	meta := func(tables ...string) json.RawMessage {
		b, _ := json.Marshal(cassandra.NodeMeta{Tables: tables})
		return b
	}
	m := &storage.Manifest{BackupID: "b", Plugin: cassandra.Name, Nodes: []storage.NodeManifest{
		{NodeID: "n1", Plugin: meta("ks1.users", "ks2.events")}, {NodeID: "n2", Plugin: meta("ks1.users", "ks2.events")}}}
	assign := map[string]RestoreInput{"n1": {SourceNode: "n1"}, "n2": {SourceNode: "n2"}}
	for _, c := range []struct {
		name   string
		assign map[string]RestoreInput
		target string
		opts   api.RestoreOptions
		want   string
	}{
		{"unknown table", assign, "", api.RestoreOptions{Tables: []string{"ks1.users", "ks9.nope"}}, "ks9.nope"},
		{"unknown keyspace pattern", assign, "", api.RestoreOptions{Tables: []string{"ks3.*"}}, "ks3.*"},
		{"bad pattern", assign, "", api.RestoreOptions{Tables: []string{"users"}}, "keyspace.table"},
		{"target", assign, "/tmp/x", api.RestoreOptions{}, "no target"},
		{"node and tables", assign, "", api.RestoreOptions{Node: "n1", Tables: []string{"ks1.users"}}, "not both"},
		{"unmapped node", map[string]RestoreInput{"n1": {SourceNode: "n1"}, "n3": {Clear: true}}, "", api.RestoreOptions{}, "n3"},
	} {
		_, err := cassandraPlan(m, c.assign, c.target, c.opts)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want a bad request naming %q)", c.name, err, c.want)
		}
	}
	if _, err := cassandraPlan(m, assign, "", api.RestoreOptions{Tables: []string{"ks2.*"}}); err != nil {
		t.Fatal(err)
	}
}

// A repair rewrites the index and deletes packs: it must hold the
// exclusive lock, like gc, and release it whatever happens.
func TestRepairPlanIsExclusive(t *testing.T) {
	if lockKind(fsm.KindRepair) != storage.LockExclusive {
		t.Fatalf("repair takes a %s lock", lockKind(fsm.KindRepair))
	}
	p := repairPlan()
	if len(p) != 3 || p[0].Name != StepLock || p[1].Name != StepRepair || p[2].Name != StepUnlock || !p[2].Always {
		t.Fatalf("plan %+v", p)
	}
}
