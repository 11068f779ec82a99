// Command cqlcheck is a tiny cqlsh stand-in for the Cassandra test
// harness (scripts/cassandra.sh): it connects to one or more nodes over
// CQL, creates a keyspace and a table, writes rows, reads them back and
// checks every value. It lives in its own Go module (it predates the
// cassandra plugin, which brought gocql into crayfish's go.mod).
//
//	go run . -hosts 127.0.0.2,127.0.0.3 -rf 2 -rows 100
//
// Exit status 0 means every row read back matched what was written.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

func main() {
	hosts := flag.String("hosts", "127.0.0.2", "comma-separated node addresses")
	port := flag.Int("port", 9042, "CQL native transport port")
	keyspace := flag.String("keyspace", "cqlcheck", "keyspace to create and use")
	table := flag.String("table", "kv", "table to create and use")
	rf := flag.Int("rf", 1, "SimpleStrategy replication factor of the keyspace")
	rows := flag.Int("rows", 100, "rows to insert and read back")
	consistency := flag.String("consistency", "ALL", "consistency level for writes and reads")
	drop := flag.Bool("drop", false, "drop the keyspace at the end")
	readOnly := flag.Bool("read-only", false, "only read and verify rows written by an earlier run")
	timeout := flag.Duration("timeout", 20*time.Second, "per-query timeout")
	flag.Parse()

	if err := run(strings.Split(*hosts, ","), *port, *keyspace, *table, *rf, *rows,
		*consistency, *drop, *readOnly, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "cqlcheck:", err)
		os.Exit(1)
	}
}

func run(hosts []string, port int, ks, table string, rf, rows int, consistency string,
	drop, readOnly bool, timeout time.Duration) error {
	cl, err := gocql.ParseConsistencyWrapper(consistency)
	if err != nil {
		return err
	}
	cluster := gocql.NewCluster(hosts...)
	cluster.Port = port
	cluster.Timeout = timeout
	cluster.ConnectTimeout = timeout
	cluster.Consistency = cl
	cluster.ProtoVersion = 4
	cluster.DisableInitialHostLookup = false
	session, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("connect %v:%d: %w", hosts, port, err)
	}
	defer session.Close()

	var release, clusterName string
	if err := session.Query(`SELECT release_version, cluster_name FROM system.local`).
		Scan(&release, &clusterName); err != nil {
		return fmt.Errorf("system.local: %w", err)
	}
	var peers int
	if err := session.Query(`SELECT count(*) FROM system.peers_v2`).Scan(&peers); err != nil {
		return fmt.Errorf("system.peers_v2: %w", err)
	}
	fmt.Printf("connected: cluster %q, Cassandra %s, %d peer(s)\n", clusterName, release, peers)

	qualified := ks + "." + table
	if !readOnly {
		ddl := []string{
			fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}`, ks, rf),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (id int PRIMARY KEY, name text, payload blob, at timestamp)`, qualified),
		}
		for _, q := range ddl {
			if err := session.Query(q).Consistency(gocql.All).Exec(); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if err := session.AwaitSchemaAgreement(context.Background()); err != nil {
			return fmt.Errorf("schema agreement: %w", err)
		}
		start := time.Now()
		for i := 0; i < rows; i++ {
			if err := session.Query(`INSERT INTO `+qualified+` (id, name, payload, at) VALUES (?, ?, ?, ?)`,
				i, rowName(i), rowPayload(i), time.UnixMilli(int64(i)*1000).UTC()).Exec(); err != nil {
				return fmt.Errorf("insert row %d: %w", i, err)
			}
		}
		fmt.Printf("inserted %d rows into %s in %v\n", rows, qualified, time.Since(start).Round(time.Millisecond))
	}

	// Point reads, then a full scan.
	for i := 0; i < rows; i++ {
		var name string
		var payload []byte
		var at time.Time
		if err := session.Query(`SELECT name, payload, at FROM `+qualified+` WHERE id = ?`, i).
			Scan(&name, &payload, &at); err != nil {
			return fmt.Errorf("read row %d: %w", i, err)
		}
		if name != rowName(i) || string(payload) != string(rowPayload(i)) || !at.Equal(time.UnixMilli(int64(i)*1000)) {
			return fmt.Errorf("row %d: got (%q, %x, %v)", i, name, payload, at)
		}
	}
	var count int
	if err := session.Query(`SELECT count(*) FROM ` + qualified).Scan(&count); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	if count != rows {
		return fmt.Errorf("count(*) = %d, want %d", count, rows)
	}
	fmt.Printf("read back and verified %d rows (consistency %s)\n", rows, consistency)

	if drop {
		if err := session.Query(`DROP KEYSPACE IF EXISTS ` + ks).Exec(); err != nil {
			return fmt.Errorf("drop keyspace: %w", err)
		}
		fmt.Printf("dropped keyspace %s\n", ks)
	}
	return nil
}

func rowName(i int) string { return fmt.Sprintf("row-%05d", i) }

func rowPayload(i int) []byte {
	b := make([]byte, 64)
	for j := range b {
		b[j] = byte(i*31 + j)
	}
	return b
}
