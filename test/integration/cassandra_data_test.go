package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gocql/gocql"
)

// The Cassandra suite's schema and data.

const (
	cassUsers  = 2000
	cassEvents = 2000
	cassLegacy = 1000 // rows of ks2.legacy before its column was dropped, and after
	cassBroken = 300
)

// cassandraSchema creates two keyspaces replicated on both nodes: a UDT,
// a table using it with a secondary index and a materialized view, and a
// clustered table.
var cassandraSchema = []string{
	`CREATE KEYSPACE ks1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
	`CREATE TYPE ks1.addr (street text, zip int)`,
	`CREATE TABLE ks1.users (id int PRIMARY KEY, name text, email text, home frozen<addr>, score bigint)`,
	`CREATE INDEX users_email ON ks1.users (email)`,
	`CREATE MATERIALIZED VIEW ks1.users_by_name AS SELECT * FROM ks1.users WHERE name IS NOT NULL AND id IS NOT NULL PRIMARY KEY (name, id)`,
	`CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
	`CREATE TABLE ks2.events (day text, seq int, payload blob, PRIMARY KEY (day, seq))`,
	`CREATE TABLE ks2.legacy (id int PRIMARY KEY, name text, legacy_code text)`,
	`CREATE TABLE ks2.broken (id int PRIMARY KEY, v text)`,
}

const (
	cassProfiles = 300 // partitions of ks3.profiles, three rows each
	cassPages    = 100 // counters of ks3.hits
)

// profilesSchema is ks3: what else a real cluster has:
// NetworkTopologyStrategy, collections, a frozen UDT, a static column,
// other compaction and compression, counters, and an index on note: SAI
// and a vector column on Cassandra 5 (the vector has no SAI index:
// Cassandra 5.0 refuses ANN indexes on several data directories, and
// the suite's nodes have two), a secondary index on 4.x.
func profilesSchema(v5 bool) []string {
	vector, index := "", `CREATE INDEX profiles_note ON ks3.profiles (note)`
	if v5 {
		vector, index = " emb vector<float, 4>,", `CREATE INDEX profiles_note ON ks3.profiles (note) USING 'sai'`
	}
	return []string{
		`CREATE KEYSPACE ks3 WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 2}`,
		`CREATE TYPE ks3.contact (kind text, value text)`,
		`CREATE TABLE ks3.profiles (id int, seq int, region text static, tags set<text>, scores list<int>, attrs map<text, text>,
			main frozen<contact>,` + vector + ` note text, PRIMARY KEY (id, seq))
			WITH compaction = {'class': 'LeveledCompactionStrategy'} AND compression = {'class': 'ZstdCompressor'}`,
		index,
		`CREATE TABLE ks3.hits (page text PRIMARY KEY, n counter)`,
		// Every other CQL type, nested collections and tuples included.
		`CREATE TABLE ks3.alltypes (id int PRIMARY KEY, a ascii, b bigint, bl blob, bo boolean, d date, de decimal,
			do double, du duration, f float, i inet, si smallint, tx text, tm time, ts timestamp, tu timeuuid,
			ti tinyint, u uuid, vi varint, tp tuple<int, text>, nested frozen<list<frozen<map<text, int>>>>,
			tuples set<frozen<tuple<int, int>>>)`,
	}
}

// allTypesRow is an INSERT of row i of ks3.alltypes, all literals.
func allTypesRow(i int) string {
	return fmt.Sprintf(`INSERT INTO ks3.alltypes (id, a, b, bl, bo, d, de, do, du, f, i, si, tx, tm, ts, tu, ti, u, vi, tp, nested, tuples)
		VALUES (%[1]d, 'ascii-%[1]d', %[2]d, 0x%[3]x, %[4]t, '2026-01-%02[5]d', %[1]d.125, %[1]d.5, 1h%[1]dm, %[1]d.25, '10.0.0.%[6]d', %[7]d,
		'text ✓ %[1]d', '12:34:%02[8]d.123456789', '2026-12-04T10:%02[8]d:00.123Z', %[9]s, %[10]d, %[11]s, %[12]s, (%[1]d, 't-%[1]d'),
		[{'k%[1]d': %[1]d}, {}], {(%[1]d, 1), (%[1]d, 2)})`,
		i, int64(i)*1_000_000_007, []byte(fmt.Sprint(i)), i%2 == 0, i%28+1, i%250+1, i%30000, i%60,
		fmt.Sprintf("50554d6e-29bb-11e5-b345-feff819c%04x", i), i%120, fmt.Sprintf("00000000-0000-4000-8000-%012d", i), fmt.Sprintf("%d000000000000000000000", i))
}

// loadProfiles creates and fills ks3: half of it flushed, then a column added, the
// rest left in memtables (the backup's snapshot flushes them); every
// third partition written with a TTL; counters incremented page-many
// times.
func loadProfiles(t *testing.T, s *gocql.Session, nodes []cassandraNode, v5 bool) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := s.Query(q, args...).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range profilesSchema(v5) {
		exec(q)
	}
	type contact struct {
		Kind  string `cql:"kind"`
		Value string `cql:"value"`
	}
	row := func(i, seq int, extra string) {
		ttl := ""
		if i%3 == 0 {
			ttl = " USING TTL 86400"
		}
		cols, marks := "id, seq, region, tags, scores, attrs, main, note", "?, ?, ?, ?, ?, ?, ?, ?"
		if v5 { // the vector is a literal: gocql v1.7 cannot marshal one
			cols, marks = cols+", emb", marks+fmt.Sprintf(", [0.5, %d.5, %d.0, 1.0]", i, seq)
		}
		args := []any{i, seq, fmt.Sprintf("region-%d", i%7), []string{"a", fmt.Sprint(i)}, []int{i, seq}, map[string]string{"k": fmt.Sprint(i * seq)},
			contact{"mail", fmt.Sprintf("u%d@example.com", i)}, fmt.Sprintf("note-%d-%d", i, seq)}
		if extra != "" {
			cols, marks, args = cols+", later", marks+", ?", append(args, extra)
		}
		exec(`INSERT INTO ks3.profiles (`+cols+`) VALUES (`+marks+`)`+ttl, args...)
	}
	for i := range cassProfiles / 2 {
		for seq := range 3 {
			row(i, seq, "")
		}
	}
	for i := range 50 {
		exec(allTypesRow(i))
	}
	for p := range cassPages {
		for range p%5 + 1 {
			exec(`UPDATE ks3.hits SET n = n + ? WHERE page = ?`, int64(p), fmt.Sprintf("page-%d", p))
		}
	}
	for _, n := range nodes {
		n.run(t, "nodetool", n.name, "flush", "ks3")
	}
	exec(`ALTER TABLE ks3.profiles ADD later text`)
	for i := cassProfiles / 2; i < cassProfiles; i++ {
		for seq := range 3 {
			row(i, seq, fmt.Sprintf("later-%d", i))
		}
	}
	for p := range cassPages / 2 {
		exec(`UPDATE ks3.hits SET n = n + 1 WHERE page = ?`, fmt.Sprintf("page-%d", p))
	}
}

// loadLegacyData gives ks2.legacy SSTables that predate a column drop:
// rows with legacy_code are flushed on both nodes, legacy_code is
// dropped, added_later added, and more rows written with it (the rows of
// the first SSTables name a column the table no longer has: only the
// table's dropped-column record lets Cassandra read them). ks2.broken
// gets rows, flushed.
func loadLegacyData(t *testing.T, s *gocql.Session, nodes []cassandraNode) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := s.Query(q, args...).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := range cassLegacy {
		exec(`INSERT INTO ks2.legacy (id, name, legacy_code) VALUES (?, ?, ?)`, i, fmt.Sprintf("old-%d", i), fmt.Sprintf("code-%d", i))
	}
	for i := range cassBroken {
		exec(`INSERT INTO ks2.broken (id, v) VALUES (?, ?)`, i, fmt.Sprintf("v-%d", i))
	}
	for _, n := range nodes {
		n.run(t, "nodetool", n.name, "flush", "ks2")
	}
	exec(`ALTER TABLE ks2.legacy DROP legacy_code`)
	exec(`ALTER TABLE ks2.legacy ADD added_later int`)
	for i := cassLegacy; i < 2*cassLegacy; i++ {
		exec(`INSERT INTO ks2.legacy (id, name, added_later) VALUES (?, ?, ?)`, i, fmt.Sprintf("new-%d", i), i*3)
	}
	for i := range 100 { // old rows updated after the drop
		exec(`UPDATE ks2.legacy SET added_later = ? WHERE id = ?`, -i, i)
	}
}

// corruptStatistics flips one byte in the middle of every Statistics.db
// of a table on a node: Cassandra then refuses the SSTable when it opens
// it (its metadata checksum fails), at import and at start-up alike.
// The running node keeps the copy it read at start.
func corruptStatistics(t *testing.T, n cassandraNode, ks, table string) {
	t.Helper()
	var files []string
	for _, d := range []string{"data1", "data2"} {
		m, _ := filepath.Glob(filepath.Join(n.dir, d, ks, table+"-*", "*-Statistics.db"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no Statistics.db of %s.%s on %s", ks, table, n.name)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadCassandraData(t *testing.T, s *gocql.Session) {
	t.Helper()
	for _, q := range cassandraSchema {
		if err := s.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	type addr struct {
		Street string `cql:"street"`
		Zip    int    `cql:"zip"`
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var err error
				if i < cassUsers {
					err = s.Query(`INSERT INTO ks1.users (id, name, email, home, score) VALUES (?, ?, ?, ?, ?)`,
						i, fmt.Sprintf("name-%d", i), fmt.Sprintf("user%d@example.com", i), addr{fmt.Sprintf("%d Main St", i), 10000 + i}, int64(i)*7919).Exec()
				} else {
					j := i - cassUsers
					payload := sha256.Sum256([]byte(fmt.Sprint(j)))
					err = s.Query(`INSERT INTO ks2.events (day, seq, payload) VALUES (?, ?, ?)`,
						fmt.Sprintf("day-%02d", j%20), j, payload[:]).Exec()
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range cassUsers + cassEvents {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("insert: %v", err)
	default:
	}
}

// cassTables are every user table of the suite, views included.
var cassTables = []string{"ks1.users", "ks1.users_by_name", "ks2.events", "ks2.legacy", "ks3.profiles", "ks3.hits", "ks3.alltypes"}
