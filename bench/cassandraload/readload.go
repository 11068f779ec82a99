package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

// readLoad reads random rows of bench.<table> at a fixed rate until
// SIGTERM or SIGINT, then prints how many it read and their latency
// percentiles. The load is open: each read is due at a time set by the
// rate, and its latency counts from that time, so reads queued behind a
// slow one count as slow too (no coordinated omission).
// The rows are the ids 0..rows-1 that a write of the same -mib and
// -row-kib made (counting them would scan the table: a count(*) over
// 1 GiB of blobs ran Cassandra's heap out of memory).
func readLoad(host, table string, rows, rate, workers int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := connect(host, 30*time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	if rows <= 0 {
		return fmt.Errorf("no rows to read (-mib and -row-kib)")
	}
	due := make(chan time.Time, rate*60)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    int
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			var data []byte
			for at := range due {
				err := s.Query(`SELECT data FROM bench.`+table+` WHERE id = ?`, r.IntN(rows)).Scan(&data)
				lat := time.Since(at)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					latencies = append(latencies, lat)
				}
				mu.Unlock()
			}
		}()
	}
	started := time.Now()
	interval := time.Second / time.Duration(rate)
	next := started
	for ctx.Err() == nil {
		next = next.Add(interval)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
			select {
			case due <- next:
			default: // more than a minute behind: counted as failed
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}
	}
	close(due)
	wg.Wait()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	fmt.Printf("reads %d failed %d in %.1f s: p50 %.2f ms p99 %.2f ms max %.2f ms\n",
		len(latencies), failed, time.Since(started).Seconds(), pct(0.50), pct(0.99), pct(1))
	return nil
}
