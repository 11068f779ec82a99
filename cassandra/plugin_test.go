package cassandra

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestParseSelection(t *testing.T) {
	sel, err := ParseSelection([]string{"ks1.t1", " ks2.* ", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ks, t string
		want  bool
	}{{"ks1", "t1", true}, {"ks1", "t2", false}, {"ks2", "anything", true}, {"ks3", "t1", false}} {
		if got := sel.Match(c.ks, c.t); got != c.want {
			t.Errorf("Match(%s.%s) = %v", c.ks, c.t, got)
		}
	}
	if got := sel.Missing([]string{"ks1.t1", "ks1.t2"}); !slices.Equal(got, []string{"ks2.*"}) {
		t.Errorf("Missing = %v", got)
	}
	for _, bad := range []string{"ks1", "ks1.", ".t", "a.b.c", "ks/x.t", "system.local", "system_schema.*"} {
		if _, err := ParseSelection([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSplitTableDir(t *testing.T) {
	table, id, ok := splitTableDir("users_by-name-8e0458a0e92411f1bae4b7b36c33eefc")
	if !ok || table != "users_by-name" || id != "8e0458a0e92411f1bae4b7b36c33eefc" {
		t.Fatalf("got %q %q %v", table, id, ok)
	}
	for _, bad := range []string{"users", "users-123", "-8e0458a0e92411f1bae4b7b36c33eefc"} {
		if _, _, ok := splitTableDir(bad); ok {
			t.Errorf("%q split", bad)
		}
	}
}

func TestCompareTokensIsNumeric(t *testing.T) {
	tokens := []string{"100", "-5", "9", "-100", "0", "-9223372036854775808", "9223372036854775807"}
	slices.SortFunc(tokens, compareTokens)
	want := []string{"-9223372036854775808", "-100", "-5", "0", "9", "100", "9223372036854775807"}
	if !slices.Equal(tokens, want) {
		t.Fatalf("sorted %v", tokens)
	}
}

func TestBaseTable(t *testing.T) {
	for _, c := range []struct {
		it   SchemaItem
		want string
	}{
		{SchemaItem{Type: "index", CQL: "CREATE INDEX users_email ON ks1.users (email);"}, "users"},
		{SchemaItem{Type: "index", CQL: "CREATE CUSTOM INDEX i ON ks1.\"Users\" (x) USING 'sai';"}, "Users"},
		{SchemaItem{Type: "materialized_view", CQL: "CREATE MATERIALIZED VIEW ks1.v AS\n    SELECT *\n    FROM ks1.users\n    WHERE name IS NOT NULL"}, "users"},
		{SchemaItem{Type: "table", CQL: "CREATE TABLE ks1.t (id int PRIMARY KEY)"}, ""},
	} {
		if got := c.it.baseTable(); got != c.want {
			t.Errorf("%q: base %q, want %q", c.it.CQL, got, c.want)
		}
	}
}

func TestStageFilter(t *testing.T) {
	inc, exc, needed := StageFilter(RestoreAction{Action: ActionImport, Tables: Selection{"ks1.t1", "ks2.*"}})
	if !needed || !slices.Equal(inc, []string{"cassandra/**", "data/ks1/t1-*", "data/ks2/*-*"}) || exc != nil {
		t.Fatalf("tables: %v %v %v", inc, exc, needed)
	}
	inc, exc, needed = StageFilter(RestoreAction{Action: ActionLoad})
	if !needed || inc != nil || !slices.Contains(exc, "data/system") || !slices.Contains(exc, "data/system_schema") || !slices.Contains(exc, stateDir) {
		t.Fatalf("full: %v %v %v", inc, exc, needed)
	}
	if _, _, needed := StageFilter(RestoreAction{Action: ActionReset}); needed {
		t.Fatal("reset downloads files")
	}
	if !slices.Contains(exc, commitlogPrefix) {
		t.Fatalf("a full restore stages the backup's archived segments: %v", exc)
	}
	if _, exc, needed := StageFilter(RestoreAction{Action: ActionNode}); !needed || !slices.Equal(exc, []string{stateDir, commitlogPrefix}) {
		t.Fatal("a node restore needs every file, system keyspaces included, but no archived segment, and keeps the restore's own state (staged segments)")
	}
	inc, _, needed = StageFilter(RestoreAction{Action: ActionSegments, Segments: []string{"CommitLog-7-1.log", "CommitLog-7-2.log"}})
	if !needed || !slices.Equal(inc, []string{"commitlog/CommitLog-7-1.log", "commitlog/CommitLog-7-2.log"}) {
		t.Fatalf("segments: %v %v", inc, needed)
	}
}

// TestLinkSnapshot builds Cassandra's on-disk layout (two JBOD data
// directories, a table split across them, a secondary index directory)
// and checks the tree handed to the node.
func TestLinkSnapshot(t *testing.T) {
	root := t.TempDir()
	d1, d2 := filepath.Join(root, "data1"), filepath.Join(root, "data2")
	id := "8e0458a0e92411f1bae4b7b36c33eefc"
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap1 := filepath.Join(d1, "ks1", "users-"+id, "snapshots", "op1")
	snap2 := filepath.Join(d2, "ks1", "users-"+id, "snapshots", "op1")
	write(filepath.Join(snap1, "nb-1-big-Data.db"), "one")
	write(filepath.Join(snap1, "manifest.json"), "{}")
	write(filepath.Join(snap1, "schema.cql"), "CREATE TABLE")
	write(filepath.Join(snap1, ".users_email", "nb-1-big-Data.db"), "idx")
	write(filepath.Join(snap2, "nb-2-big-Data.db"), "two")
	write(filepath.Join(snap2, "manifest.json"), "{}")
	write(filepath.Join(snap2, "schema.cql"), "CREATE TABLE")
	write(filepath.Join(d1, "ks1", "users-"+id, "snapshots", "other", "nb-9-big-Data.db"), "not ours")
	write(filepath.Join(d1, "ks1", "users-"+id, "nb-3-big-Data.db"), "live, not in the snapshot")

	p, err := New(Config{Hosts: []string{"127.0.0.1"}, DataDirs: []string{d1, d2}, Nodetool: []string{"nodetool"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "tree")
	if err := p.linkSnapshot("op1", dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, path)
			got = append(got, rel)
		}
		return nil
	})
	slices.Sort(got)
	base := "data/ks1/users-" + id + "/"
	want := []string{base + ".users_email/nb-1-big-Data.db", base + "nb-1-big-Data.db", base + "nb-2-big-Data.db", base + "schema.cql"}
	if !slices.Equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Hard links, not copies.
	a, _ := os.Stat(filepath.Join(snap2, "nb-2-big-Data.db"))
	b, _ := os.Stat(filepath.Join(dst, base, "nb-2-big-Data.db"))
	if !os.SameFile(a, b) {
		t.Fatal("snapshot files were copied, not linked")
	}
	tags, err := p.Snapshots()
	if err != nil || !slices.Equal(tags, []string{"op1", "other"}) {
		t.Fatalf("Snapshots = %v, %v", tags, err)
	}
	// A missing snapshot is an error, not an empty backup.
	if err := p.linkSnapshot("nope", filepath.Join(root, "tree2")); err == nil {
		t.Fatal("a missing snapshot linked")
	}
}

func TestStagedTablesAndLinkTree(t *testing.T) {
	staged := t.TempDir()
	id := "8e0458a0e92411f1bae4b7b36c33eefc"
	for _, f := range []string{"data/ks1/users-" + id + "/nb-1-big-Data.db", "data/ks1/users-" + id + "/schema.cql",
		"data/system/local-" + id + "/nb-1-big-Data.db", "data/ks2/events-" + id + "/nb-4-big-Data.db"} {
		p := filepath.Join(staged, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f), 0o644)
	}
	user, err := stagedTables(staged, nil, false)
	if err != nil || len(user) != 2 {
		t.Fatalf("user tables %v %v", user, err)
	}
	all, _ := stagedTables(staged, nil, true)
	if len(all) != 3 {
		t.Fatalf("all tables %v", all)
	}
	sel, _ := stagedTables(staged, Selection{"ks2.*"}, false)
	if len(sel) != 1 || sel[0].Table != "events" || sel[0].OldID != id {
		t.Fatalf("selected %v", sel)
	}
	// Run as root (as the suite is), the links and every directory the
	// restore creates go to the configured owner; the directory that was
	// there keeps its own.
	base := t.TempDir()
	dst := filepath.Join(base, "ks1", "users-new")
	owner := fileOwner{uid: 4242, gid: 4243}
	if err := linkTree(user[0].Dir, dst, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "nb-1-big-Data.db")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		for p, want := range map[string]int{base: os.Geteuid(), filepath.Dir(dst): 4242, dst: 4242, filepath.Join(dst, "nb-1-big-Data.db"): 4242} {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != want || (want == 4242 && st.Gid != 4243) {
				t.Errorf("%s is owned by %d:%d, want uid %d", p, st.Uid, st.Gid, want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "schema.cql")); err == nil {
		t.Fatal("schema.cql was put into a table directory")
	}
	// A repeat replaces what is there.
	if err := linkTree(user[0].Dir, dst, owner); err != nil {
		t.Fatal(err)
	}
}

func TestSelectionWithViews(t *testing.T) {
	views := map[string]string{"ks1.by_name": "ks1.users", "ks1.by_mail": "ks1.users", "ks2.v": "ks2.events"}
	got := Selection{"ks1.users"}.WithViews(views)
	if !slices.Equal(got, Selection{"ks1.users", "ks1.by_mail", "ks1.by_name"}) {
		t.Fatalf("views of ks1.users: %v", got)
	}
	if got := (Selection{"ks2.*"}).WithViews(views); !slices.Equal(got, Selection{"ks2.*"}) {
		t.Fatalf("a keyspace pattern already covers its views: %v", got)
	}
}

func TestClearKeepsSnapshotsOnlyForTables(t *testing.T) {
	root := t.TempDir()
	d1 := filepath.Join(root, "data1")
	id := "8e0458a0e92411f1bae4b7b36c33eefc"
	for _, f := range []string{"ks/t-" + id + "/nb-1-big-Data.db", "ks/t-" + id + "/snapshots/s1/x", "ks/t-" + id + "/backups/y", "ks/u-" + id + "/nb-2-big-Data.db"} {
		p := filepath.Join(d1, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	commit := filepath.Join(root, "commitlog")
	os.MkdirAll(commit, 0o755)
	os.WriteFile(filepath.Join(commit, "CommitLog-1.log"), nil, 0o644)
	p, err := New(Config{Hosts: []string{"h"}, DataDirs: []string{d1, filepath.Join(root, "missing")}, Nodetool: []string{"nodetool"}, CommitlogDir: commit}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.clearTable("ks", "t-"+id); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{"ks/t-" + id + "/nb-1-big-Data.db": false, "ks/t-" + id + "/snapshots/s1/x": true,
		"ks/t-" + id + "/backups/y": true, "ks/u-" + id + "/nb-2-big-Data.db": true} {
		if _, err := os.Stat(filepath.Join(d1, f)); (err == nil) != want {
			t.Errorf("after clearTable, %s exists: %v, want %v", f, err == nil, want)
		}
	}
	if err := p.clear(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{d1, commit} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("%s not empty after clear: %d entries", d, len(entries))
		}
	}
}

func TestParseOwner(t *testing.T) {
	for in, want := range map[string]fileOwner{"4242:4243": {4242, 4243}, "root:0": {0, 0}, "root": {0, 0}, "0:root": {0, 0}} {
		if got, err := parseOwner(in); err != nil || got != want {
			t.Errorf("parseOwner(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":", "4242", "4242:", ":0", "no-such-user-crayfish:0", "0:no-such-group-crayfish"} {
		if got, err := parseOwner(in); err == nil {
			t.Errorf("parseOwner(%q) = %v, want an error", in, got)
		}
	}
}
