package backend

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func openT(t *testing.T, url string) Backend {
	t.Helper()
	b, err := Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestMem(t *testing.T) {
	testBackend(t, openT(t, "mem://"))
}

func TestFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo", "not-yet-created")
	b := openT(t, "file://"+dir)
	testBackend(t, b)

	t.Run("CrashLeftoverTmpNotListed", func(t *testing.T) {
		ctx := context.Background()
		mustPut(t, ctx, b, "left/over", []byte("data"))
		// What a crash between create and rename leaves behind, in
		// fileblob's and this package's naming, plus a sidecar.
		for _, name := range []string{"left/over.18f3a2b4c5d6e7f8.tmp", "left/new.18f3a2b4c5d6e7f9.tmp", "left/over.attrs"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := keysOf(listKeys(t, ctx, b, "left/")); !slices.Equal(got, []string{"left/over"}) {
			t.Fatalf("List = %q, want only left/over", got)
		}
		if got := keysOf(listKeys(t, ctx, b, "")); slices.ContainsFunc(got, func(k string) bool {
			return strings.HasSuffix(k, ".tmp") || strings.HasSuffix(k, ".attrs")
		}) {
			t.Fatalf("List(\"\") shows temporary files: %q", got)
		}
	})

	t.Run("NoSidecarsOrTempFilesLeft", func(t *testing.T) {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(filepath.Base(path), "left") || strings.Contains(path, "/left/") {
				return nil // the previous subtest's planted files
			}
			if strings.HasSuffix(path, ".attrs") || strings.HasSuffix(path, ".tmp") {
				t.Errorf("found %s", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		ctx := context.Background()
		mustPut(t, ctx, b, "persist/me", []byte("durable"))
		b2 := openT(t, "file://"+dir)
		mustGet(t, ctx, b2, "persist/me", []byte("durable"))
	})

	t.Run("IfNotExistAcrossInstances", func(t *testing.T) {
		// Two Backends on one directory stand in for two processes: the
		// create-only write must still have exactly one winner.
		ctx := context.Background()
		others := []Backend{b, openT(t, "file://"+dir), openT(t, "file://"+dir), openT(t, "file://"+dir)}
		for round := range 20 {
			key := "lease/" + string(rune('a'+round))
			var wins atomic.Int32
			var wg sync.WaitGroup
			for i, o := range others {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := o.Put(ctx, key, []byte{byte(i)}, true)
					if err == nil {
						wins.Add(1)
					} else if !errors.Is(err, ErrExists) {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("round %d: %d winners", round, wins.Load())
			}
		}
	})

	t.Run("KeyDirectoryCollisionIsPermanent", func(t *testing.T) {
		// On file:// a key cannot also be a "directory" of other keys.
		ctx := context.Background()
		mustPut(t, ctx, b, "coll/a", []byte("x"))
		for _, key := range []string{"coll/a/b", "coll"} {
			for _, ifNotExist := range []bool{false, true} {
				err := b.Put(ctx, key, []byte("y"), ifNotExist)
				if err == nil {
					t.Fatalf("Put(%q, ifNotExist=%v) succeeded", key, ifNotExist)
				}
				if IsTransient(err) && !errors.Is(err, ErrExists) {
					t.Errorf("Put(%q, ifNotExist=%v) = %v, classified as transient", key, ifNotExist, err)
				}
			}
		}
		mustGet(t, ctx, b, "coll/a", []byte("x"))
	})

	t.Run("OpenRejectsHost", func(t *testing.T) {
		if _, err := Open(context.Background(), "file://example.com/x"); err == nil {
			t.Fatal("Open(file://example.com/x) succeeded")
		}
	})
}
