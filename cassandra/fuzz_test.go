package cassandra

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// FuzzSchema feeds arbitrary text to the plugin's parsers of what a backup
// carries (kind picks one): a table's CQL from cassandra/schema.json
// (statement splitting, table-id and IF NOT EXISTS rewriting, the column
// list and dropped columns a restore compares with the running table), the
// names of commit-log segments and table directories, a restore's table
// selection, and a node's recorded metadata. Nothing may panic. Split
// statements are non-empty, trimmed, in order in the text, and split no
// further; a recorded table id is 36 lower-case characters; columns are
// parsed only from a CREATE TABLE; segment and table-directory names parse
// only in their shape; accepted selections are keyspace.table patterns
// outside the system keyspaces; metadata round-trips.
func FuzzSchema(f *testing.F) {
	table := `CREATE TABLE IF NOT EXISTS ks."T" (
    id uuid,
    "Quoted ""col""" text,
    m map<text, frozen<list<int>>>,
    s int STATIC,
    PRIMARY KEY (id, "Quoted ""col""")
) WITH ID = 5a1c395e-b41f-11e5-9f22-ba0be0483c18 AND comment = 'a; b' AND compaction = {'class': 'x'};
ALTER TABLE ks."T" DROP old USING TIMESTAMP 1700000000000000;
ALTER TABLE ks."T" ADD old text;`
	f.Add(byte(0), table)
	f.Add(byte(0), `CREATE FUNCTION ks.f(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return a; $$;`)
	f.Add(byte(0), `CREATE TABLE ks.t (a int PRIMARY KEY, b 'x`)
	f.Add(byte(1), "CommitLog-7-1700000000000.log")
	f.Add(byte(1), "users-5a1c395eb41f11e59f22ba0be0483c18")
	f.Add(byte(2), "ks1.t1,ks2.*, system.local")
	f.Add(byte(3), `{"host_id":"h","tables":["ks.t"],"views":{"ks.v":"ks.t"},"commitlog":[{"name":"CommitLog-7-1.log","size":3}]}`)
	f.Fuzz(func(t *testing.T, kind byte, s string) {
		if len(s) > 1<<14 {
			return
		}
		switch kind % 4 {
		case 0:
			stmts := splitStatements(s)
			pos := 0
			for _, st := range stmts {
				if st == "" || st != strings.TrimSpace(st) {
					t.Fatalf("statement %q is empty or untrimmed", st)
				}
				i := strings.Index(s[pos:], st)
				if i < 0 {
					t.Fatalf("statement %q is not in order in the text", st)
				}
				pos += i + len(st)
				if again := splitStatements(st); len(again) != 1 || again[0] != st {
					t.Fatalf("statement %q splits again into %q", st, again)
				}
			}
			it := SchemaItem{Keyspace: "ks", Type: "table", Name: "t", CQL: s}
			it.statements()
			it.statementsWithID(true)
			it.hasInternals()
			if id := it.backedUpID(); id != "" && (len(id) != 36 || id != strings.ToLower(id)) {
				t.Fatalf("table id %q", id)
			}
			if _, err := parseTableColumns(it); err == nil && !createTable.MatchString(it.statements()[0]) {
				t.Fatalf("columns parsed from a first statement that is no CREATE TABLE: %q", s)
			}
			// The rest is what follows the identifier in the trimmed text (the name is
			// lower-cased, or unescaped when quoted: an invalid UTF-8 byte
			// becomes U+FFFD, so it may be longer than its text).
			if name, rest := splitIdent(s); !strings.HasSuffix(strings.TrimSpace(s), rest) || (name == "" && rest != "" && !strings.HasPrefix(strings.TrimSpace(s), `"`)) {
				t.Fatalf("splitIdent(%q) = %q, %q", s, name, rest)
			}
		case 1:
			if id, err := ParseSegmentName(s); err == nil && (id < 0 || !strings.HasPrefix(s, "CommitLog-") || !strings.HasSuffix(s, ".log")) {
				t.Fatalf("segment name %q parsed as %d", s, id)
			}
			if table, id, ok := splitTableDir(s); ok && (table+"-"+id != s || len(id) != 32) {
				t.Fatalf("table dir %q split as %q, %q", s, table, id)
			}
		case 2:
			sel, err := ParseSelection(strings.Split(s, ","))
			if err != nil {
				return
			}
			for _, p := range sel {
				ks, tb, ok := strings.Cut(p, ".")
				if !ok || ks == "" || tb == "" || IsSystemKeyspace(ks) || strings.ContainsAny(p, "/\\ ") {
					t.Fatalf("selection accepted %q", p)
				}
				sel.Match(ks, tb)
			}
			sel.Missing([]string{"ks.t"})
			views := sel.WithViews(map[string]string{"ks.v": "ks.t"})
			if !slices.Equal(views[:len(sel)], sel) {
				t.Fatal("WithViews changed the selection")
			}
		case 3:
			m, err := ParseNodeMeta(json.RawMessage(s))
			if err != nil {
				return
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatalf("parsed metadata does not encode: %v", err)
			}
			m2, err := ParseNodeMeta(b)
			if err != nil {
				t.Fatalf("encoded metadata does not parse: %v", err)
			}
			if b2, _ := json.Marshal(m2); string(b) != string(b2) {
				t.Fatalf("metadata does not round-trip:\n%s\n%s", b, b2)
			}
		}
	})
}
