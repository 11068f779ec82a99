package tree

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

// An in-place snapshot links and copies nothing: it records the tree and
// hashes it where it is, and Upload reads from the root (SnapshotResult.Dir).
func TestSnapshotInPlace(t *testing.T) {
	st := makeSourceTree(t)
	res, err := Snapshot(context.Background(), st.root, "", SnapshotOptions{InPlace: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(st.root)
	if res.Dir != real {
		t.Errorf("Dir %s, want the root %s", res.Dir, real)
	}
	// Nothing was linked: the files have one link each.
	for p := range st.contents {
		fi, _ := os.Lstat(filepath.Join(st.root, p))
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Errorf("%s has %d links", p, n)
		}
	}
	// Same entries as a linked snapshot.
	linked, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, linked, res)
	if !slices.Equal(res.Warnings, linked.Warnings) {
		t.Errorf("warnings %q vs %q", res.Warnings, linked.Warnings)
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, res.Entries)

	if _, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "x"), SnapshotOptions{InPlace: true}); err == nil {
		t.Error("in-place snapshot accepted a destination")
	}
}

// Upload reads through an os.Root: a directory of a live tree swapped for a
// symlink after the snapshot cannot make it read files outside the tree.
func TestUploadInPlaceDoesNotEscapeRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "live")
	mustWrite(t, filepath.Join(root, "a/f"), []byte("inside"), 0o644)
	mustWrite(t, filepath.Join(base, "outside/f"), []byte("SECRET"), 0o644)
	res, err := Snapshot(context.Background(), root, "", SnapshotOptions{InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	// Same size, so only the path check stands in the way.
	mustWrite(t, filepath.Join(base, "outside/f"), []byte("SECRET"), 0o644)
	os.RemoveAll(filepath.Join(root, "a"))
	mustSymlink(t, filepath.Join(base, "outside"), filepath.Join(root, "a"))
	store := newFakeStore()
	_, err = Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
	if err == nil {
		t.Fatal("upload read through a symlink out of the root")
	}
	t.Logf("upload: %v", err)
	for _, b := range store.blobs {
		if bytes.Equal(b, []byte("SECRET")) {
			t.Fatal("outside file stored")
		}
	}
}

// In place, a file deleted or replaced by a FIFO between the walk and its
// read is skipped with a warning; the read never blocks on the FIFO.
func TestSnapshotInPlaceFileGoesAway(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	mustWrite(t, filepath.Join(root, "gone"), []byte("soon deleted"), 0o644)
	mustWrite(t, filepath.Join(root, "fifo"), []byte("soon a fifo"), 0o644)
	mustWrite(t, filepath.Join(root, "stays"), []byte("here"), 0o644)
	testWalkHook = func(rel string) {
		if rel == "stays" { // walked last: the others are listed by now
			os.Remove(filepath.Join(root, "gone"))
			os.Remove(filepath.Join(root, "fifo"))
			syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644)
		}
	}
	t.Cleanup(func() { testWalkHook = nil })
	res, err := Snapshot(context.Background(), root, "", SnapshotOptions{InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(res.Entries); !slices.Equal(got, []string{"stays"}) {
		t.Errorf("entries %q", got)
	}
	if len(res.Warnings) != 2 || !strings.Contains(strings.Join(res.Warnings, "\n"), "gone: vanished") ||
		!strings.Contains(strings.Join(res.Warnings, "\n"), "fifo: changed type") {
		t.Errorf("warnings %q", res.Warnings)
	}
	if res.Stats.Files != 1 {
		t.Errorf("stats %+v", res.Stats)
	}
}

// As root, owners are recorded beside the entries and applied by Restore
// through RestoreOptions.Owner (before the mode: chown clears setuid).
func TestOwnersRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to chown (CI runs as root)")
	}
	st := makeSourceTree(t)
	owners := map[string]Owner{
		"a":             {1001, 2001},
		"a/exec.sh":     {1002, 2002},
		"suid":          {1003, 2003},
		"a/link-rel":    {1004, 2004},
		unicodeName:     {1005, 2005},
		"empty":         {1006, 2006},
		"sgid":          {0, 2007},
		"dir2/dup2.txt": {1008, 0},
	}
	for p, o := range owners {
		if err := os.Lchown(filepath.Join(st.root, p), int(o.UID), int(o.GID)); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(st.root, "suid"), 0o755|fs.ModeSetuid) // chown cleared it
	res, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{RecordOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Owners) != len(res.Entries) {
		t.Fatalf("%d owners for %d entries", len(res.Owners), len(res.Entries))
	}
	recorded := map[string]Owner{}
	for i, e := range res.Entries {
		recorded[e.Path] = res.Owners[i]
		want, ok := owners[e.Path]
		if !ok {
			want = Owner{0, 0}
		}
		if res.Owners[i] != want {
			t.Errorf("%s: recorded owner %+v, want %+v", e.Path, res.Owners[i], want)
		}
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	ownerFn := func(e *storage.FileEntry) (Owner, bool) {
		o, ok := recorded[e.Path]
		return o, ok
	}
	target := filepath.Join(t.TempDir(), "restored")
	for range 2 { // the second restore keeps every file and still fixes owners
		if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{Owner: ownerFn}); err != nil {
			t.Fatal(err)
		}
		assertTree(t, target, res.Entries) // modes (setuid included) survived the chown
		for p, want := range owners {
			fi, err := os.Lstat(filepath.Join(target, p))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := ownerOf(fi); got != want {
				t.Errorf("%s: restored owner %+v, want %+v", p, got, want)
			}
		}
		for p := range owners {
			os.Lchown(filepath.Join(target, p), 0, 0)
		}
	}
	// Without the option, owners are left alone.
	plain := filepath.Join(t.TempDir(), "plain")
	if _, err := Restore(context.Background(), plain, res.Entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(filepath.Join(plain, "a/exec.sh"))
	if got, _ := ownerOf(fi); got != (Owner{0, 0}) {
		t.Errorf("owner applied without the option: %+v", got)
	}
}
