// Command cassandraload fills a Cassandra node with about -mib MiB of
// table data for bench/cassandra.sh: rows of random (incompressible)
// blobs in a keyspace of replication factor 1, written by parallel
// workers, then a digest of every row so a restore can be checked.
//
//	go run ./bench/cassandraload -host 127.0.5.1 -mib 1024
//	go run ./bench/cassandraload -host 127.0.5.1 -check   # print the digest only
//	go run ./bench/cassandraload -host 127.0.5.1 -read-rate 200  # read load until SIGTERM, then latencies
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"
)

func main() {
	host := flag.String("host", "127.0.0.1", "CQL host")
	mib := flag.Int("mib", 1024, "MiB of blob data to write")
	rowKiB := flag.Int("row-kib", 64, "KiB per row")
	workers := flag.Int("workers", 16, "parallel writers")
	check := flag.Bool("check", false, "only print the count and digest of the rows")
	table := flag.String("table", "blobs", "table of keyspace bench to write and read (a point-in-time benchmark writes its log to another)")
	readRate := flag.Int("read-rate", 0, "with a rate: read random rows at this many per second until SIGTERM or SIGINT, then print the latencies")
	flag.Parse()
	if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(*table) {
		fmt.Fprintln(os.Stderr, "cassandraload: -table: a lower-case CQL name")
		os.Exit(2)
	}
	if *readRate > 0 {
		if err := readLoad(*host, *table, *mib*1024 / *rowKiB, *readRate, *workers); err != nil {
			fmt.Fprintln(os.Stderr, "cassandraload:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*host, *table, *mib, *rowKiB, *workers, *check); err != nil {
		fmt.Fprintln(os.Stderr, "cassandraload:", err)
		os.Exit(1)
	}
}

func run(host, table string, mib, rowKiB, workers int, check bool) error {
	s, err := connect(host, time.Minute)
	if err != nil {
		return err
	}
	defer s.Close()
	if !check {
		for _, q := range []string{
			`CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
			`CREATE TABLE IF NOT EXISTS bench.` + table + ` (id int PRIMARY KEY, data blob) WITH compression = {'enabled': 'false'}`,
		} {
			if err := s.Query(q).Exec(); err != nil {
				return err
			}
		}
		rows := mib * 1024 / rowKiB
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		started := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 7))
				buf := make([]byte, rowKiB*1024)
				for {
					i := int(next.Add(1)) - 1
					if i >= rows {
						return
					}
					for j := 0; j < len(buf); j += 8 {
						v := r.Uint64()
						for k := 0; k < 8; k++ {
							buf[j+k] = byte(v >> (8 * k))
						}
					}
					if err := s.Query(`INSERT INTO bench.`+table+` (id, data) VALUES (?, ?)`, i, buf).Exec(); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
		}
		el := time.Since(started)
		fmt.Printf("wrote %d rows (%d MiB) in %s (%.1f MB/s)\n", rows, mib, el.Round(time.Second), float64(mib)*1.048576/el.Seconds())
	}
	iter := s.Query(`SELECT id, data FROM bench.` + table).PageSize(100).Iter()
	var (
		id   int
		data []byte
		n    int
		sum  [32]byte
	)
	for iter.Scan(&id, &data) {
		h := sha256.Sum256(append(fmt.Append(nil, id, ":"), data...))
		for k := range sum {
			sum[k] ^= h[k] // order-independent
		}
		n++
	}
	if err := iter.Close(); err != nil {
		return err
	}
	fmt.Printf("rows %d digest %s\n", n, hex.EncodeToString(sum[:]))
	return nil
}

// connect opens a session to host at consistency ONE with the given
// request timeout.
func connect(host string, timeout time.Duration) (*gocql.Session, error) {
	c := gocql.NewCluster(host)
	c.ProtoVersion = 4
	c.Timeout = timeout
	c.ConnectTimeout = 30 * time.Second
	c.Consistency = gocql.One
	return c.CreateSession()
}
