package coord

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// TestTimeRestoreBackups: a restore to a time starts from the newest
// backup of the cluster's plugin finished by then, and hands the planner
// the later ones in time order; a time no backup reaches, or a named
// backup finished after it, is a 400.
func TestTimeRestoreBackups(t *testing.T) {
	ops, _, repo := startEngine(t, &fakeWorker{})
	at := func(h, m int) time.Time { return time.Date(2026, 12, 4, h, m, 0, 0, time.UTC) }
	for _, b := range []struct {
		id, plugin    string
		start, finish time.Time
	}{
		{"b1", "files", at(10, 0), at(10, 5)},
		{"b2", "files", at(11, 0), at(11, 5)},
		{"b2x", "m3db", at(11, 20), at(11, 30)}, // another plugin's backup in the same repository
		{"b3", "files", at(12, 0), at(12, 5)},
	} {
		repo.m[b.id] = &storage.Manifest{BackupID: b.id, Plugin: b.plugin, StartedAt: b.start, FinishedAt: b.finish, Nodes: []storage.NodeManifest{{NodeID: "n1"}}}
	}
	ctx := context.Background()
	for _, c := range []struct {
		named   string
		to      time.Time
		base    string
		later   string
		refusal string
	}{
		{"", at(11, 40), "b2", "b3", ""},
		{"", at(11, 3), "b1", "b2 b3", ""}, // b2 started by then but had not finished
		{"", at(12, 5), "b3", "", ""},
		{"b1", at(11, 40), "b1", "b2 b3", ""},
		{"", at(10, 4), "", "", "no backup of this cluster finished"},
		{"b3", at(11, 40), "", "", "after the time to restore to"},
	} {
		base, later, err := ops.timeRestoreBackups(ctx, c.named, c.to)
		if c.refusal != "" {
			if !errors.Is(err, wire.ErrBadRequest) || !strings.Contains(err.Error(), c.refusal) {
				t.Errorf("%s %v: %v, want a 400 saying %q", c.named, c.to, err, c.refusal)
			}
			continue
		}
		var ids []string
		for _, m := range later {
			ids = append(ids, m.BackupID)
		}
		if err != nil || base != c.base || strings.Join(ids, " ") != c.later {
			t.Errorf("%s %v: base %s later %v (%v), want %s and %s", c.named, c.to, base, ids, err, c.base, c.later)
		}
	}
	// The files plugin cannot replay to a time.
	to := at(11, 40)
	_, _, err := ops.StartRestore(ctx, "r1", "", "", api.RestoreOptions{ToTime: &to})
	if !errors.Is(err, wire.ErrBadRequest) || !strings.Contains(err.Error(), "cannot be restored to a time") {
		t.Fatalf("files restore to a time: %v", err)
	}
}

// TestCheckActionBackups: an action may download another backup only if
// it is one of the later backups the planner was given, from a node of it.
func TestCheckActionBackups(t *testing.T) {
	later := []plugin.LaterBackup{{BackupID: "b2", Nodes: []plugin.NodeAssignment{{Source: "n1"}}}}
	plan := func(backup, source string) plugin.Plan {
		return plugin.Plan{Phases: []plugin.Phase{{Actions: []plugin.Action{{Node: "n1", Backup: backup, Source: source}}}}}
	}
	if err := checkActionSources(plan("b2", "n1"), nil, later); err != nil {
		t.Fatal(err)
	}
	if err := checkActionSources(plan("b9", "n1"), nil, later); err == nil || !strings.Contains(err.Error(), "b9") {
		t.Fatalf("a backup that is not a later one: %v", err)
	}
	if err := checkActionSources(plan("b2", "n7"), nil, later); err == nil || !strings.Contains(err.Error(), "n7") {
		t.Fatalf("a node that is not in the later backup: %v", err)
	}
	in, steps, err := restoreSteps(plan("b2", "n1"), map[string]wire.RestoreInput{"n1": {SourceNode: "n1"}})
	if err != nil || in["n1"].BackupID != "b2" || !strings.Contains(string(steps[1].Input), `"backup_id":"b2"`) {
		t.Fatalf("the step input carries the backup: %v %s %v", in, steps[1].Input, err)
	}
}

// TestTimeRestoreLogs: a restore to a time reads the log archives of the
// backup's plugin holding a file closed since it began (less the
// margin), in time order; archives shipped long before are not read.
func TestTimeRestoreLogs(t *testing.T) {
	ops, _, repo := startEngine(t, &fakeWorker{})
	at := func(h, m int) time.Time { return time.Date(2026, 12, 4, h, m, 0, 0, time.UTC) }
	base := &storage.Manifest{BackupID: "b1", Plugin: "cassandra", StartedAt: at(10, 0), FinishedAt: at(10, 5)}
	add := func(node, plugin string, from, to time.Time) string {
		id := storage.LogArchiveID(node, to.Add(10*time.Second))
		repo.logs[id] = &storage.LogArchive{ID: id, Plugin: plugin, From: from, To: to, Node: storage.NodeManifest{NodeID: node}}
		return id
	}
	add("n1", "cassandra", at(8, 0), at(8, 50))              // closed before the margin: left out
	edge := add("n1", "cassandra", at(9, 0), at(9, 30))      // within the margin
	other := add("n2", "m3db", at(10, 10), at(10, 20))       // another plugin
	within := add("n2", "cassandra", at(10, 30), at(10, 40)) // after the backup
	after := add("n1", "cassandra", at(11, 30), at(11, 40))  // after the time: holds it
	got, err := ops.timeRestoreLogs(context.Background(), base, at(11, 0))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range got {
		ids = append(ids, a.ID)
	}
	if want := []string{edge, within, after}; strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("log archives %v, want %v (not %s)", ids, want, other)
	}
	later := laterLogs(got)
	if later[0].LogArchive != edge || later[0].Nodes[0].Source != "n1" || !later[0].FinishedAt.Equal(at(9, 30)) || later[0].BackupID != "" {
		t.Fatalf("as a later backup: %+v", later[0])
	}
	// A plan may download from them, and the step input says so.
	plan := plugin.Plan{Phases: []plugin.Phase{{Actions: []plugin.Action{{Node: "n1", LogArchive: after, Source: "n1"}}}}}
	if err := checkActionSources(plan, nil, later); err != nil {
		t.Fatal(err)
	}
	in, _, err := restoreSteps(plan, map[string]wire.RestoreInput{"n1": {SourceNode: "n1"}})
	if err != nil || in["n1"].LogArchive != after {
		t.Fatalf("step input %+v %v", in, err)
	}
	plan.Phases[0].Actions[0].Source = "n2"
	if err := checkActionSources(plan, nil, later); err == nil {
		t.Fatal("a plan downloading another node of a log archive passed")
	}
}

// TestPruneLogArchives: cleanup deletes the log archives whose files
// all closed over the margin before the oldest kept backup began, and
// keeps the rest.
func TestPruneLogArchives(t *testing.T) {
	ops, _, repo := startEngine(t, &fakeWorker{})
	at := func(h int) time.Time { return time.Date(2026, 12, 4, h, 0, 0, 0, time.UTC) }
	repo.m["b1"] = &storage.Manifest{BackupID: "b1", Plugin: "cassandra", StartedAt: at(10), FinishedAt: at(10)}
	add := func(to time.Time) string {
		id := storage.LogArchiveID("n1", to.Add(time.Minute))
		repo.logs[id] = &storage.LogArchive{ID: id, Plugin: "cassandra", From: to.Add(-time.Hour), To: to, Node: storage.NodeManifest{NodeID: "n1"}}
		return id
	}
	old, recent, newer := add(at(7)), add(at(9).Add(30*time.Minute)), add(at(11))
	deleted, err := ops.engine.pruneLogArchives(context.Background())
	if err != nil || strings.Join(deleted, " ") != old {
		t.Fatalf("deleted %v (%v), want [%s]", deleted, err, old)
	}
	for _, id := range []string{recent, newer} {
		if _, ok := repo.logs[id]; !ok {
			t.Errorf("%s deleted", id)
		}
	}
}
