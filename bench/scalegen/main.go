// Command scalegen writes a synthetic tree of many small files for
// bench/scale-files.sh (issue 17): N files of 0-2 KiB, spread over
// directories of -per-dir files each, with a pool of goroutines.
//
//	go run ./bench/scalegen -dir /tmp/root -n 1000000
//
// The tree is deterministic: file i is d<i/per-dir>/f<i>, its size and
// its bytes come from a generator seeded with (-seed, i), so two runs
// write the same tree and no two files share their content (nothing
// deduplicates). It prints the files, directories and bytes written.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	dir := flag.String("dir", "", "directory to create the tree in (created; must not hold a tree already)")
	n := flag.Int("n", 10000, "number of files")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	maxSize := flag.Int("max-size", 2048, "largest file size in bytes (sizes are uniform in 0..max-size)")
	seed := flag.Uint64("seed", 17, "seed of the sizes and contents")
	workers := flag.Int("workers", 4*runtime.NumCPU(), "goroutines creating files")
	flag.Parse()
	if *dir == "" || *n < 0 || *perDir < 1 || *maxSize < 0 || *workers < 1 {
		flag.Usage()
		os.Exit(2)
	}
	start := time.Now()
	dirs := (*n + *perDir - 1) / *perDir
	var next atomic.Int64
	var written atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, *workers)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, *maxSize)
			for {
				d := int(next.Add(1) - 1)
				if d >= dirs {
					return
				}
				b, err := writeDir(*dir, d, *perDir, *n, *maxSize, *seed, buf)
				written.Add(b)
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d files in %d directories, %d bytes, %.1f s\n", *n, dirs, written.Load(), time.Since(start).Seconds())
}

// writeDir writes directory d: files d*perDir up to n (exclusive).
func writeDir(root string, d, perDir, n, maxSize int, seed uint64, buf []byte) (int64, error) {
	path := filepath.Join(root, fmt.Sprintf("d%05d", d))
	if err := os.MkdirAll(path, 0o755); err != nil {
		return 0, err
	}
	var total int64
	for i := d * perDir; i < min(n, (d+1)*perDir); i++ {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		size := r.IntN(maxSize + 1)
		b := buf[:size]
		for j := 0; j < size; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(filepath.Join(path, fmt.Sprintf("f%08d", i)), b, 0o644); err != nil {
			return total, err
		}
		total += int64(size)
	}
	return total, nil
}
