package cassandra

import (
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// describedTable is what Cassandra 5.0.9 answered to DESCRIBE SCHEMA WITH
// INTERNALS for a table whose legacy_code was dropped, added_later added
// and name dropped and re-added.
const describedTable = `CREATE TABLE k.d (
    id int PRIMARY KEY,
    added_later int,
    legacy_code text,
    name text
) WITH ID = 2dd415b0-efe1-11f1-bd97-39140a21c228
    AND additional_write_policy = '99p'
    AND comment = 'a; b'
    AND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}
    AND speculative_retry = '99p';
ALTER TABLE k.d DROP legacy_code USING TIMESTAMP 1796388584787000;
ALTER TABLE k.d DROP name USING TIMESTAMP 1796388584918000;
ALTER TABLE k.d ADD name text;`

func TestStatementsRecreateDroppedColumns(t *testing.T) {
	it := SchemaItem{Keyspace: "k", Type: "table", Name: "d", CQL: describedTable}
	stmts := it.statements()
	if len(stmts) != 4 {
		t.Fatalf("%d statements: %q", len(stmts), stmts)
	}
	if strings.Contains(stmts[0], "ID =") || !strings.Contains(stmts[0], ") WITH additional_write_policy") || !strings.Contains(stmts[0], "'a; b'") {
		t.Fatalf("create: %s", stmts[0])
	}
	if stmts[1] != "ALTER TABLE k.d DROP legacy_code USING TIMESTAMP 1796388584787000" || stmts[3] != "ALTER TABLE k.d ADD name text" {
		t.Fatalf("alters: %q", stmts[1:])
	}
	if !it.hasInternals() || (SchemaItem{Type: "table", CQL: "CREATE TABLE k.d (id int PRIMARY KEY) WITH comment = '';"}).hasInternals() {
		t.Fatal("hasInternals")
	}
	tc, err := parseTableColumns(it)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Columns) != 4 || tc.Columns["legacy_code"] != "text" || tc.Columns["id"] != "int" {
		t.Fatalf("columns %v", tc.Columns)
	}
	if tc.Dropped["legacy_code"] != 1796388584787000 || tc.Dropped["name"] != 1796388584918000 || len(tc.Dropped) != 2 {
		t.Fatalf("dropped %v", tc.Dropped)
	}
	// A view's ID without a following AND, IF NOT EXISTS of a snapshot's
	// schema.cql, and a function body with semicolons.
	view := SchemaItem{Type: "materialized_view", CQL: "CREATE MATERIALIZED VIEW IF NOT EXISTS k.v AS SELECT * FROM k.t PRIMARY KEY (name, id) WITH ID = 2ad4b860-efe1-11f1-bd97-39140a21c228;"}
	if got := view.statements(); len(got) != 1 || got[0] != "CREATE MATERIALIZED VIEW k.v AS SELECT * FROM k.t PRIMARY KEY (name, id)" {
		t.Fatalf("view: %q", got)
	}
	fn := SchemaItem{Type: "function", CQL: "CREATE FUNCTION k.f(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ int b = a; return b; $$;"}
	if got := fn.statements(); len(got) != 1 {
		t.Fatalf("function split: %q", got)
	}
	// With the id kept (the target has no table of that id).
	if id := it.backedUpID(); id != "2dd415b0-efe1-11f1-bd97-39140a21c228" {
		t.Fatalf("table id %q", id)
	}
	if id := view.backedUpID(); id != "2ad4b860-efe1-11f1-bd97-39140a21c228" {
		t.Fatalf("view id %q", id)
	}
	if id := fn.backedUpID(); id != "" {
		t.Fatalf("function id %q", id)
	}
	kept := it.statementsWithID(true)
	if len(kept) != 4 || !strings.Contains(kept[0], ") WITH ID = 2dd415b0-efe1-11f1-bd97-39140a21c228\n    AND additional_write_policy") {
		t.Fatalf("create keeping the id: %s", kept[0])
	}
	if got := view.statementsWithID(true); got[0] != "CREATE MATERIALIZED VIEW k.v AS SELECT * FROM k.t PRIMARY KEY (name, id) WITH ID = 2ad4b860-efe1-11f1-bd97-39140a21c228" {
		t.Fatalf("view keeping the id: %q", got)
	}
}

func TestColumnDefsQuotedAndNested(t *testing.T) {
	it := SchemaItem{Keyspace: "k", Name: "t", Type: "table", CQL: `CREATE TABLE k.t (
    day text,
    "Seq" int,
    m map<text, frozen<tuple<int, text>>>,
    s int static,
    PRIMARY KEY (day, "Seq")
) WITH CLUSTERING ORDER BY ("Seq" DESC);`}
	tc, err := parseTableColumns(it)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"day": "text", "Seq": "int", "m": "map<text, frozen<tuple<int, text>>>", "s": "int"}
	if len(tc.Columns) != len(want) {
		t.Fatalf("columns %v", tc.Columns)
	}
	for k, v := range want {
		if tc.Columns[k] != v {
			t.Fatalf("column %s = %q, want %q (all: %v)", k, tc.Columns[k], v, tc.Columns)
		}
	}
}

func TestReadableBy(t *testing.T) {
	backup := tableColumns{Columns: map[string]string{"id": "int", "legacy_code": "text", "name": "text"}, Dropped: map[string]int64{"legacy_code": 5}}
	ok := tableColumns{Columns: map[string]string{"id": "int", "name": "text", "extra": "int"}, Dropped: map[string]int64{"legacy_code": 5}}
	if got := backup.readableBy(ok); len(got) != 0 {
		t.Fatalf("a table recording the drop: %v", got)
	}
	lost := tableColumns{Columns: map[string]string{"id": "int", "name": "text"}, Dropped: map[string]int64{}}
	if got := backup.readableBy(lost); len(got) != 1 || !strings.Contains(got[0], "legacy_code (dropped in the backup") {
		t.Fatalf("a table without the drop: %v", got)
	}
	// The running table has legacy_code as a live column with no record
	// of the backup's drop: the values the drop hid would come back.
	resurrect := tableColumns{Columns: map[string]string{"id": "int", "name": "text", "legacy_code": "text"}, Dropped: map[string]int64{}}
	if got := backup.readableBy(resurrect); len(got) != 1 || !strings.Contains(got[0], "would come back") {
		t.Fatalf("a dropped column live again: %v", got)
	}
	// Dropped and re-added in the running table at the backup's drop time
	// (kept to the millisecond): fine.
	backup.Dropped["legacy_code"] = 1796388584787123
	readded := tableColumns{Columns: resurrect.Columns, Dropped: map[string]int64{"legacy_code": 1796388584787000}}
	if got := backup.readableBy(readded); len(got) != 0 {
		t.Fatalf("a column re-added after the same drop: %v", got)
	}
	retyped := tableColumns{Columns: map[string]string{"id": "int", "name": "blob"}, Dropped: map[string]int64{"legacy_code": 1}}
	if got := backup.readableBy(retyped); len(got) != 1 || !strings.Contains(got[0], "name is text in the backup but blob") {
		t.Fatalf("a retyped column: %v", got)
	}
}

func TestWithStagedInternals(t *testing.T) {
	staged := t.TempDir()
	dir := filepath.Join(staged, dataPrefix, "k", "d-2dd415b0efe111f1bd9739140a21c228")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cql := strings.Replace(describedTable, "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
	if err := os.WriteFile(filepath.Join(dir, "schema.cql"), []byte(cql), 0o644); err != nil {
		t.Fatal(err)
	}
	old := SchemaItem{Keyspace: "k", Type: "table", Name: "d", CQL: "CREATE TABLE k.d (id int PRIMARY KEY, added_later int, name text) WITH comment = '';"}
	got := withStagedInternals(old, staged)
	tc, err := parseTableColumns(got)
	if err != nil || tc.Dropped["legacy_code"] == 0 {
		t.Fatalf("an older backup's table did not take its dropped columns from schema.cql: %v %v", tc, err)
	}
	if s := got.statements(); !strings.HasPrefix(s[0], "CREATE TABLE k.d (") {
		t.Fatalf("IF NOT EXISTS kept: %s", s[0])
	}
}

// importLog is what Cassandra 5.0.9 logged for a refused import
// (abridged stack traces).
const importLog = `INFO  [RMI TCP Connection(8)-127.0.0.1] 2026-12-04 12:50:05,573 SSTableImporter.java:80 - [699a] Loading new SSTables for k/d2: Options{srcPaths='[/tmp/imp1/k/d2-1b]'}
ERROR [RMI TCP Connection(8)-127.0.0.1] 2026-12-04 12:50:05,584 SSTableImporter.java:142 - [699a] Failed verifying SSTable /tmp/imp1/k/d2-1b/nb-1-big in directory /tmp/imp1/k/d2-1b
java.lang.RuntimeException: Can't import sstable /tmp/imp1/k/d2-1b/nb-1-big
	at org.apache.cassandra.db.SSTableImporter.verifySSTableForImport(SSTableImporter.java:440)
Caused by: org.apache.cassandra.io.sstable.CorruptSSTableException: Corrupted: /tmp/imp1/k/d2-1b/nb-1-big
	at org.apache.cassandra.io.sstable.format.SSTableReaderLoadingBuilder.build(SSTableReaderLoadingBuilder.java:111)
Caused by: org.apache.cassandra.exceptions.UnknownColumnException: Unknown column legacy_code during deserialization
	at org.apache.cassandra.db.SerializationHeader$Component.toHeader(SerializationHeader.java:325)
ERROR [main] 2026-12-04 12:50:06,000 Other.java:1 - something about /data/k/other-1c/nb-1-big
ERROR [main] 2026-12-04 12:50:06,500 Other.java:1 - another keyspace: Corrupt sstable /data/xk/d2-1b/nb-1-big; skipping table
WARN  [main] 2026-12-04 12:50:07,000 OutputHandler.java:79 - Corrupted file: integrity check (digest) failed for /tmp/imp1/k/d2-1b/nb-1-big-Data.db: 1 != 2
INFO  [main] 2026-12-04 12:50:08,000 SSTableImporter.java:214 - No new SSTables were found for k/d2-1b
`

func TestLogProblemsSinceMark(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "system.log")
	if err := os.WriteFile(log, []byte("INFO  [main] old - ERROR about k/d2-1b before the mark\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Plugin{cfg: Config{LogFile: log}, log: discardLogger()}
	mark := p.markLog()
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(importLog)
	f.Close()
	entries, err := mark.since()
	if err != nil {
		t.Fatal(err)
	}
	got := problemsWith(entries, tableNeedle("k", "d2-1b"))
	want := []string{
		"[699a] Failed verifying SSTable /tmp/imp1/k/d2-1b/nb-1-big in directory /tmp/imp1/k/d2-1b: org.apache.cassandra.exceptions.UnknownColumnException: Unknown column legacy_code during deserialization",
		"Corrupted file: integrity check (digest) failed for /tmp/imp1/k/d2-1b/nb-1-big-Data.db: 1 != 2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("problems:\n%q\nwant\n%q", got, want)
	}
	// A log truncated and rewritten past the old mark (a start script
	// truncating it) is read from its start.
	mark = p.markLog()
	if err := os.WriteFile(log, []byte(importLog+importLog), 0o644); err != nil {
		t.Fatal(err)
	}
	if entries, _ = mark.since(); len(entries) != 12 {
		t.Fatalf("truncated log: %d entries", len(entries))
	}
}

func TestCheckSSTablesFindsDamage(t *testing.T) {
	dir := t.TempDir()
	data := []byte("some sstable bytes")
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nb-1-big-Data.db", data)
	write("nb-1-big-Digest.crc32", []byte(strconv.FormatUint(uint64(crc32.ChecksumIEEE(data)), 10)))
	write("nb-1-big-TOC.txt", []byte("Data.db\nDigest.crc32\nTOC.txt\n"))
	if got := checkSSTables(dir); len(got) != 0 {
		t.Fatalf("whole files: %v", got)
	}
	data[3] ^= 1
	write("nb-1-big-Data.db", data)
	write("nb-1-big-TOC.txt", []byte("Data.db\nDigest.crc32\nTOC.txt\nStatistics.db\n"))
	got := checkSSTables(dir)
	if len(got) != 2 || !strings.Contains(got[0], "Statistics.db, which is missing") || !strings.Contains(got[1], "nb-1-big-Data.db does not match its digest") {
		t.Fatalf("damage: %q", got)
	}
}

func TestTablesErrorIsMarked(t *testing.T) {
	err := tablesError([]TableFailure{{Table: "ks.t", Reason: "Corrupted", State: "truncated, 0 rows readable now"}}, []string{"ks.u"})
	if !errors.Is(err, ErrTablesNotRestored) || !strings.Contains(err.Error(), "ks.t: Corrupted (table state: truncated, 0 rows readable now); restored on this node: ks.u") {
		t.Fatalf("%v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestOutcomeRecordedForTheReportStep(t *testing.T) {
	staged := t.TempDir()
	p := &Plugin{log: discardLogger()}
	if err := reportOutcome(staged); err != nil {
		t.Fatalf("no outcome recorded: %v", err)
	}
	o := tablesOutcome{Failed: []TableFailure{{Table: "ks2.broken", Reason: "Checksums do not match", State: "truncated"}}, Restored: []string{"ks1.users"}}
	if err := p.recordOutcome(staged, o); err != nil {
		t.Fatal(err)
	}
	err := reportOutcome(staged)
	if !errors.Is(err, ErrTablesNotRestored) || !strings.Contains(err.Error(), "ks2.broken: Checksums do not match (table state: truncated); restored on this node: ks1.users") {
		t.Fatalf("report: %v", err)
	}
	// A repeat that restores everything clears it.
	if err := p.recordOutcome(staged, tablesOutcome{Restored: []string{"ks1.users", "ks2.broken"}}); err != nil {
		t.Fatal(err)
	}
	if err := reportOutcome(staged); err != nil {
		t.Fatalf("after a full repeat: %v", err)
	}
}
