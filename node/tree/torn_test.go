package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage"
)

// version is one state of a file's content, observable from the moment the
// system call that produced it began until the one that replaced it ended.
type version struct {
	hash     storage.ObjectID
	from, to time.Time // to is zero while the version is current
}

// history records every state each file passes through between the
// writers' system calls. A rewrite in several writes passes through
// half-rewritten states that are as real as any other: a writer that pauses
// in the middle leaves the file in one for as long as it likes, and any
// point-in-time copy (a hard link, an LVM or ZFS snapshot) may capture it.
// What a snapshot must never record silently is content that the file
// never held at any one instant: bytes read at different times.
type history struct {
	mu       sync.Mutex
	versions map[string][]version
}

func (h *history) record(p string, start, end time.Time, content []byte, exists bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vs := h.versions[p]
	if n := len(vs); n > 0 && vs[n-1].to.IsZero() {
		vs[n-1].to = end
	}
	if exists {
		vs = append(vs, version{hash: sha(content), from: start})
	}
	h.versions[p] = vs
}

// observable reports whether content hash was a version of p at some
// moment between s0 and s1.
func (h *history) observable(p string, hash storage.ObjectID, s0, s1 time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.versions[p] {
		if v.hash == hash && !v.from.After(s1) && (v.to.IsZero() || !v.to.Before(s0)) {
			return true
		}
	}
	return false
}

// writer mutates its files until stop is closed: in-place rewrites of the
// same size in up to 8 writes in random order with pauses between them,
// truncations,
// appends in one write, atomic replacements (new inode) and deletions.
func writer(t *testing.T, root string, files []string, seed uint64, h *history, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, 7))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && i+k < n; k++ {
				b[i+k] = byte(v >> (8 * k))
			}
		}
		return b
	}
	cur := map[string][]byte{}
	for _, p := range files {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Error(err)
			return
		}
		cur[p] = b
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		p := files[rng.IntN(len(files))]
		full := filepath.Join(root, p)
		old, exists := cur[p]
		start := time.Now()
		var next []byte
		op := rng.IntN(10)
		if !exists {
			op = 9 // recreate
		}
		var err error
		switch {
		case op < 4: // rewrite in place, same size, in pieces
			next = fill(len(old))
			piece := max(16<<10, (len(next)+7)/8)
			state := append([]byte(nil), old...)
			var f *os.File
			var offs []int
			for off := 0; off < len(next); off += piece {
				offs = append(offs, off)
			}
			// In random order: a read overlapping the rewrite then gets
			// bytes that no single state held.
			rng.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
			if f, err = os.OpenFile(full, os.O_WRONLY, 0); err == nil {
				for i, off := range offs {
					end := min(off+piece, len(next))
					wstart := time.Now()
					if _, err = f.WriteAt(next[off:end], int64(off)); err != nil {
						break
					}
					copy(state[off:], next[off:end])
					if i < len(offs)-1 { // the last state is recorded below
						h.record(p, wstart, time.Now(), state, true)
						time.Sleep(100 * time.Microsecond) // widen the torn windows
					}
				}
				f.Close()
			}
		case op < 5: // truncate
			next = old[:rng.IntN(len(old)+1)]
			err = os.Truncate(full, int64(len(next)))
		case op < 7: // append, in one write
			add := fill(1 + rng.IntN(16<<10))
			next = append(append([]byte(nil), old...), add...)
			var f *os.File
			if f, err = os.OpenFile(full, os.O_WRONLY|os.O_APPEND, 0); err == nil {
				_, err = f.Write(add)
				f.Close()
			}
		case op < 8: // delete
			err = os.Remove(full)
		default: // replace atomically (a new inode), or recreate
			size := len(old)
			if !exists || rng.IntN(2) == 0 {
				size = rng.IntN(200 << 10)
			}
			next = fill(size)
			tmp := full + ".tmp"
			if err = os.WriteFile(tmp, next, 0o644); err == nil {
				err = os.Rename(tmp, full)
			}
		}
		if err != nil {
			t.Errorf("writer: %s: %v", p, err)
			return
		}
		end := time.Now()
		if op == 7 {
			delete(cur, p)
			h.record(p, start, end, nil, false)
		} else {
			cur[p] = next
			h.record(p, start, end, next, true)
		}
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

// warnedPaths returns the paths the warnings are about (they start with
// "<path>: ").
func warnedPaths(warnings []string) map[string]bool {
	out := map[string]bool{}
	for _, w := range warnings {
		if p, _, ok := strings.Cut(w, ": "); ok {
			out[p] = true
		}
	}
	return out
}

// While files are rewritten, truncated, appended to, replaced and deleted,
// every file a snapshot records holds a version the file really had while
// the snapshot ran: never a mix of two versions, nor a stale one from the
// cache, unless the snapshot warned about that file or the upload failed
// with ErrCorrupt or ErrSourceChanged naming it.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	for _, mode := range []string{"link", "inplace", "copy"} {
		t.Run(mode, func(t *testing.T) { tornRounds(t, mode) })
	}
}

func tornRounds(t *testing.T, mode string) {
	root := filepath.Join(t.TempDir(), "live")
	dstBase := t.TempDir()
	if mode == "copy" {
		dstBase = otherFilesystem(t, filepath.Dir(root))
	}
	h := &history{versions: map[string][]version{}}
	const writers, perWriter = 3, 4
	var groups [][]string
	for w := range writers {
		var files []string
		for i := range perWriter {
			p := fmt.Sprintf("w%d/f%d", w, i)
			size := 1000 + i*50<<10
			if i < 2 {
				size = storage.ChunkSize + i*storage.ChunkSize/2 + 100<<10 // two chunks
			}
			content := patterned(size, byte(w*16+i))
			mustWrite(t, filepath.Join(root, p), content, 0o644)
			h.record(p, time.Now(), time.Now(), content, true)
			files = append(files, p)
		}
		groups = append(groups, files)
	}
	cache := openCache(t)
	store := newFakeStore()
	// The writers' temporary files are not versions of anything.
	opts := SnapshotOptions{Cache: cache, InPlace: mode == "inplace", Workers: 4, Exclude: []string{"**/*.tmp"}}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, files := range groups {
		wg.Go(func() { writer(t, root, files, uint64(w), h, stop) })
	}
	var total HashStats
	var recorded, reported, uploadFailures int
	for round := range 8 {
		dst := filepath.Join(dstBase, fmt.Sprint(round))
		if opts.InPlace {
			dst = ""
		}
		s0 := time.Now()
		res, err := Snapshot(context.Background(), root, dst, opts)
		s1 := time.Now()
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: snapshot: %v", round, err)
		}
		total.Rereads += res.Hash.Rereads
		total.CacheHits += res.Hash.CacheHits
		total.FilesRead += res.Hash.FilesRead
		warned := warnedPaths(res.Warnings)
		_, uerr := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
		switch {
		case uerr == nil:
		case errors.Is(uerr, storage.ErrCorrupt), errors.Is(uerr, ErrSourceChanged):
			// A linked copy, or a live file the cache spared from
			// linking, changed since the snapshot.
			uploadFailures++
		case mode == "inplace" && errors.Is(uerr, fs.ErrNotExist):
			uploadFailures++ // the live file was deleted since: not a mix
		default:
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: upload: %v", round, uerr)
		}
		for _, e := range res.Entries {
			if e.Type != storage.TypeFile {
				continue
			}
			recorded++
			if h.observable(e.Path, e.Content, s0, s1) {
				continue
			}
			if warned[e.Path] || (uerr != nil && (errors.Is(uerr, storage.ErrCorrupt) || errors.Is(uerr, ErrSourceChanged)) &&
				strings.Contains(uerr.Error(), "upload "+e.Path+": ")) {
				reported++
				continue
			}
			t.Errorf("round %d: %s: recorded content %s (%d bytes) is no version the file had during the snapshot, and nothing said so",
				round, e.Path, e.Content, e.Size)
		}
		if uerr == nil {
			// Content and Chunks describe the same bytes: a restore verifies it.
			target := filepath.Join(t.TempDir(), "restored")
			if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{}); err != nil {
				t.Errorf("round %d: restore: %v", round, err)
			}
		}
		if dst != "" {
			os.RemoveAll(dst)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%s: %d files recorded, %d reported (warning or ErrCorrupt), %d failed uploads; %d files read, %d re-reads, %d cache hits",
		mode, recorded, reported, uploadFailures, total.FilesRead, total.Rereads, total.CacheHits)
	if total.Rereads == 0 {
		t.Error("no file was ever read again: the writers did not exercise the consistency check")
	}

	// Once quiet, a snapshot records every file as it is, and the next one
	// gets them all from the cache.
	time.Sleep(2 * racyWindow)
	want := scanTree(t, root)
	for i := range 2 {
		dst := filepath.Join(dstBase, fmt.Sprint("quiet", i))
		if opts.InPlace {
			dst = ""
		}
		res, err := Snapshot(context.Background(), root, dst, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("quiet %d: warnings %q", i, res.Warnings)
		}
		for _, e := range res.Entries {
			if w, ok := want[e.Path]; !ok || (e.Type == storage.TypeFile && e.Content != w.Content) {
				t.Errorf("quiet %d: %s recorded %s, file holds %s", i, e.Path, e.Content, w.Content)
			}
		}
		if i == 1 && res.Hash.CacheHits != res.Stats.Files {
			t.Errorf("quiet %d: %+v, want %d cache hits", i, res.Hash, res.Stats.Files)
		}
		if _, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{}); err != nil {
			t.Errorf("quiet %d: upload: %v", i, err)
		}
	}
}
