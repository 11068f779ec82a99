package tree

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage"
)

// Tests of the chunked content format with the real ChunkSize (4 MiB).

const chunk = storage.ChunkSize

// snapshotOf snapshots root into a fresh directory.
func snapshotOf(t *testing.T, root string) (string, *SnapshotResult) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, dst, SnapshotOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	return dst, res
}

// chunkReader returns reads of a fixed odd size, so writes into the hasher
// straddle chunk boundaries.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestHashContentChunkBoundaries(t *testing.T) {
	data := patterned(2*chunk+7, 9)
	for _, size := range []int{1, 1000, chunk - 1, chunk, chunk + 1, 2 * chunk, 2*chunk + 7} {
		for _, readSize := range []int{100_003, 1 << 18} {
			t.Run(fmt.Sprintf("%d/%d", size, readSize), func(t *testing.T) {
				b := data[:size]
				content, chunks, n, err := hashContent(context.Background(), chunkReader{bytes.NewReader(b), readSize}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if n != int64(size) || content != sha256.Sum256(b) {
					t.Errorf("n %d content %s, want %d %s", n, content, size, sha(b))
				}
				if !slices.Equal(chunks, chunksOf(b)) || int64(len(chunks)) != storage.NumChunks(int64(size)) {
					t.Errorf("chunks %v, want %v", chunks, chunksOf(b))
				}
			})
		}
	}
	content, chunks, n, err := hashContent(context.Background(), bytes.NewReader(nil), nil)
	if err != nil || n != 0 || !content.IsZero() || chunks != nil {
		t.Errorf("empty: %s %v %d %v", content, chunks, n, err)
	}
}

// Files of exactly one chunk, one byte over, and 2.5 chunks + 1 byte go
// through snapshot, upload and restore; their chunk ids are the SHA-256
// of each piece and every chunk is stored on its own.
func TestLargeFilesRoundTrip(t *testing.T) {
	root := t.TempDir()
	contents := map[string][]byte{
		"one-chunk":        patterned(chunk, 1),
		"chunk-plus-1":     patterned(chunk+1, 2),
		"d/two-and-a-half": patterned(5*chunk/2+1, 3),
		"small":            []byte("small"),
	}
	var wantChunks int64
	for p, c := range contents {
		mustWrite(t, filepath.Join(root, p), c, 0o640)
		wantChunks += storage.NumChunks(int64(len(c)))
	}
	dst, res := snapshotOf(t, root)

	for p, c := range contents {
		e := find(res.Entries, p)
		if e == nil || e.Size != int64(len(c)) || e.Content != sha256.Sum256(c) {
			t.Fatalf("%s: %+v", p, e)
		}
		if !slices.Equal(e.Chunks, chunksOf(c)) {
			t.Errorf("%s: chunks %v, want %v", p, e.Chunks, chunksOf(c))
		}
	}
	if e := find(res.Entries, "d/two-and-a-half"); len(e.Chunks) != 3 ||
		e.Chunks[2] != sha256.Sum256(contents["d/two-and-a-half"][2*chunk:]) {
		t.Errorf("2.5 chunks + 1: %d chunks", len(e.Chunks))
	}
	if e := find(res.Entries, "chunk-plus-1"); len(e.Chunks) != 2 || e.Chunks[1] != sha256.Sum256(contents["chunk-plus-1"][chunk:]) {
		t.Errorf("chunk + 1: %v", e.Chunks)
	}

	store := newFakeStore()
	stats, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != wantChunks || stats.AlreadyPresent != 0 || stats.UploadedBytes != res.Stats.Bytes {
		t.Errorf("upload stats %+v, want %d chunks of %d bytes", stats, wantChunks, res.Stats.Bytes)
	}
	for p, c := range contents {
		for i, id := range chunksOf(c) {
			if got := store.blobs[id]; !bytes.Equal(got, c[i*chunk:min((i+1)*chunk, len(c))]) {
				t.Errorf("%s chunk %d: stored %d bytes", p, i, len(got))
			}
		}
	}

	target := filepath.Join(t.TempDir(), "target")
	var last Progress
	rstats, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{
		Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, res.Entries)
	for p, c := range contents {
		if !bytes.Equal(readFile(t, filepath.Join(target, p)), c) {
			t.Errorf("%s differs after restore", p)
		}
	}
	if rstats.Downloaded != int64(len(contents)) || rstats.DownloadedBytes != res.Stats.Bytes {
		t.Errorf("restore stats %+v", rstats)
	}
	if last.BytesDone != res.Stats.Bytes || last.FilesDone != int64(len(contents)) {
		t.Errorf("final progress %+v", last)
	}
	if got := store.loadCount(); got != int(wantChunks) {
		t.Errorf("%d loads for %d chunks", got, wantChunks)
	}
	assertNoTempFiles(t, target)
}

// Appending to a file changes only its last chunk and adds new ones: a
// second backup uploads just those.
func TestUploadAppendedFileUploadsOnlyNewChunks(t *testing.T) {
	root := t.TempDir()
	live := filepath.Join(root, "wal.log")
	orig := patterned(5*chunk/2+1, 4)
	mustWrite(t, live, orig, 0o644)
	dst1, res1 := snapshotOf(t, root)
	store := newFakeStore()
	stats, err := Upload(context.Background(), dst1, res1.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != 3 {
		t.Fatalf("first upload %+v", stats)
	}

	f, err := os.OpenFile(live, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	extra := patterned(3<<20, 5) // fills chunk 2 and starts chunk 3
	if _, err := f.Write(extra); err != nil {
		t.Fatal(err)
	}
	f.Close()
	appended := append(slices.Clone(orig), extra...)
	dst2, res2 := snapshotOf(t, root)

	old, cur := find(res1.Entries, "wal.log"), find(res2.Entries, "wal.log")
	if !slices.Equal(cur.Chunks, chunksOf(appended)) {
		t.Fatal("chunks of the appended file are wrong")
	}
	var changed, changedBytes int64
	for i, id := range cur.Chunks {
		if !slices.Contains(old.Chunks, id) {
			changed++
			changedBytes += chunkLen(cur.Size, i)
		}
	}
	if changed != 2 || !slices.Equal(cur.Chunks[:2], old.Chunks[:2]) {
		t.Fatalf("fixture: %d changed chunks, want the last 2", changed)
	}

	saves := store.totalSaves()
	stats, err = Upload(context.Background(), dst2, res2.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := UploadStats{Uploaded: changed, UploadedBytes: changedBytes, StoredBytes: stats.StoredBytes,
		AlreadyPresent: 2, AlreadyPresentBytes: 2 * chunk}
	if stats != want || store.totalSaves()-saves != int(changed) {
		t.Errorf("second upload %+v (%d saves), want %+v", stats, store.totalSaves()-saves, want)
	}

	target := t.TempDir()
	if _, err := Restore(context.Background(), target, res2.Entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(target, "wal.log")), appended) {
		t.Error("restored file differs")
	}
}

// The chunks of one large file are uploaded by several workers at once,
// never more than Concurrency.
func TestUploadLargeFileInParallel(t *testing.T) {
	root := t.TempDir()
	content := patterned(6*chunk+10, 6)
	mustWrite(t, filepath.Join(root, "big"), content, 0o644)
	dst, res := snapshotOf(t, root)
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			store := newFakeStore()
			store.saveDelay = 30 * time.Millisecond
			stats, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{Concurrency: workers})
			if err != nil {
				t.Fatal(err)
			}
			if stats.Uploaded != 7 {
				t.Errorf("uploaded %d chunks, want 7", stats.Uploaded)
			}
			switch {
			case workers == 1 && store.maxSaving != 1:
				t.Errorf("%d concurrent saves with one worker", store.maxSaving)
			case workers > 1 && (store.maxSaving < 2 || store.maxSaving > workers):
				t.Errorf("%d concurrent saves with %d workers", store.maxSaving, workers)
			}
		})
	}
}

// Restore fetches the chunks of a large file ahead, but at most
// chunkLookahead at once.
func TestRestoreLargeFileFetchesAhead(t *testing.T) {
	content := patterned(6*chunk+10, 7)
	store := newFakeStore()
	for i := 0; i < len(content); i += chunk {
		store.put(content[i:min(i+chunk, len(content))])
	}
	store.loadDelay = 30 * time.Millisecond
	target := t.TempDir()
	entries := []storage.FileEntry{fileEntry("big", content)}
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(target, "big")), content) {
		t.Error("restored file differs")
	}
	if store.maxLoading < 2 || store.maxLoading > chunkLookahead {
		t.Errorf("%d concurrent loads, want 2..%d", store.maxLoading, chunkLookahead)
	}
}

// A source that returns a chunk of the wrong length, a wrong chunk of the
// right length or an error fails the file; the old file stays.
func TestRestoreVerifiesChunks(t *testing.T) {
	content := patterned(2*chunk+100, 8)
	e := fileEntry("d/big", content)
	entries := []storage.FileEntry{{Path: "d", Type: storage.TypeDir, Mode: 0o755}, e}
	pieces := map[storage.ObjectID][]byte{}
	for i, id := range e.Chunks {
		pieces[id] = content[i*chunk : min((i+1)*chunk, len(content))]
	}
	for _, tc := range []struct {
		name  string
		alter func(i int, b []byte) ([]byte, error)
		want  error
	}{
		{"short first chunk", func(i int, b []byte) ([]byte, error) {
			if i == 0 {
				return b[:len(b)-1], nil
			}
			return b, nil
		}, ErrVerify},
		{"long last chunk", func(i int, b []byte) ([]byte, error) {
			if i == 2 {
				return append(slices.Clone(b), 'x'), nil
			}
			return b, nil
		}, ErrVerify},
		{"wrong middle chunk", func(i int, b []byte) ([]byte, error) {
			if i == 1 {
				return pieces[e.Chunks[0]], nil // right length, wrong bytes
			}
			return b, nil
		}, ErrVerify},
		{"corrupt chunk", func(i int, b []byte) ([]byte, error) {
			if i == 1 {
				return nil, fmt.Errorf("blob: %w", storage.ErrCorrupt)
			}
			return b, nil
		}, ErrDamaged}, // the file is left out, the others restored (damage_test.go)
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			mustWrite(t, filepath.Join(target, "d/big"), []byte("old"), 0o644)
			src := sourceFunc(func(_ context.Context, id storage.ObjectID) ([]byte, error) {
				return tc.alter(slices.Index(e.Chunks, id), pieces[id])
			})
			_, err := Restore(context.Background(), target, entries, src, RestoreOptions{})
			assertIs(t, err, tc.want)
			if !strings.Contains(err.Error(), "d/big") {
				t.Errorf("error %q does not name the file", err)
			}
			if got := readFile(t, filepath.Join(target, "d/big")); string(got) != "old" {
				t.Errorf("old file replaced by %d bytes", len(got))
			}
			assertNoTempFiles(t, target)
		})
	}
}

// Cancelling while the chunks of a large file are being fetched returns
// promptly, and no fetch is still running when Restore returns.
func TestRestoreLargeFileCancel(t *testing.T) {
	content := patterned(5*chunk, 10)
	entries := []storage.FileEntry{fileEntry("big", content)}
	var running atomic.Int64
	started := make(chan struct{}, 10)
	src := sourceFunc(func(ctx context.Context, id storage.ObjectID) ([]byte, error) {
		running.Add(1)
		defer running.Add(-1)
		started <- struct{}{}
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // a slow source notices late
		return nil, errors.New("source gave up")
	})
	ctx, cancel := context.WithCancel(context.Background())
	target := t.TempDir()
	done := make(chan error)
	go func() {
		_, err := Restore(ctx, target, entries, src, RestoreOptions{})
		done <- err
	}()
	for range chunkLookahead {
		<-started // all of the window is requested before anything arrives
	}
	cancel()
	select {
	case err := <-done:
		assertIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("restore did not stop after cancel")
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d fetches still running after Restore returned", n)
	}
	if len(started) != 0 {
		t.Errorf("%d more fetches started than the lookahead allows", len(started))
	}
	assertNoTempFiles(t, target)
}

// All files of a restore share one budget of chunks in flight: with eight
// workers on multi-chunk files (each alone would fetch chunkLookahead
// ahead) the loads at once stay within inflightBytes, and the restore
// still finishes: a file holding budget never waits for more.
func TestRestoreSharesTheInflightBudget(t *testing.T) {
	content := patterned(3*chunk+10, 9)
	store := newFakeStore()
	for i := 0; i < len(content); i += chunk {
		store.put(content[i:min(i+chunk, len(content))])
	}
	store.loadDelay = 20 * time.Millisecond
	var entries []storage.FileEntry
	for i := range 12 {
		entries = append(entries, fileEntry(fmt.Sprintf("f%02d", i), content))
	}
	target := t.TempDir()
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{Concurrency: 8}); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !bytes.Equal(readFile(t, filepath.Join(target, e.Path)), content) {
			t.Fatalf("%s differs", e.Path)
		}
	}
	if store.maxLoading < 2 || store.maxLoadingBytes > inflightBytes {
		t.Errorf("%d concurrent loads of %d bytes, want at least 2 and at most %d bytes (the shared budget)",
			store.maxLoading, store.maxLoadingBytes, inflightBytes)
	}
}
