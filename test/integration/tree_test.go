package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// entryDesc is what a restore must reproduce for one path.
type entryDesc struct {
	kind  string // file, dir, symlink
	mode  fs.FileMode
	mtime time.Time
	size  int64
	hash  string
	link  string
}

func (e entryDesc) String() string {
	return fmt.Sprintf("%s mode=%v mtime=%s size=%d hash=%.12s link=%q", e.kind, e.mode, e.mtime.Format(time.RFC3339Nano), e.size, e.hash, e.link)
}

// describeTree reads everything a restore must get right under root.
func describeTree(t *testing.T, root string) map[string]entryDesc {
	t.Helper()
	out := map[string]entryDesc{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entryDesc{mode: info.Mode().Perm(), mtime: info.ModTime()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.kind = "symlink"
			e.link, err = os.Readlink(p)
			e.mode, e.mtime = 0, time.Time{} // link metadata is not restored
		case info.IsDir():
			e.kind = "dir"
		default:
			e.kind, e.size = "file", info.Size()
			e.hash, err = hashFile(p)
		}
		out[filepath.ToSlash(rel)] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// compareTrees fails the test with every difference between want and got.
func compareTrees(t *testing.T, want, got map[string]entryDesc) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing: "+p)
		case g.kind != w.kind || g.mode != w.mode || g.size != w.size || g.hash != w.hash || g.link != w.link || !g.mtime.Equal(w.mtime):
			diffs = append(diffs, fmt.Sprintf("differs: %s\n  want %v\n  got  %v", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra: "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
		}
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// makeTree builds the tree the issue asks for: nested dirs, empty files
// and an empty dir, a 50 MiB file, smallFiles small files, a name with
// spaces and UTF-8, a symlink, and assorted modes and mtimes.
func makeTree(t *testing.T, root string, smallFiles int, bigSize int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	writeFile(t, filepath.Join(root, "big", "fifty.bin"), randomBytes(r, bigSize), 0o640)
	writeFile(t, filepath.Join(root, "empty.txt"), nil, 0o644)
	writeFile(t, filepath.Join(root, "deep", "a", "b", "c", "empty-too"), nil, 0o600)
	writeFile(t, filepath.Join(root, "names", "a file with spaces ünïcödé 日本.txt"), []byte("hello, wörld\n"), 0o644)
	writeFile(t, filepath.Join(root, "scripts", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	if err := os.MkdirAll(filepath.Join(root, "empty-dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../scripts/run.sh", filepath.Join(root, "names", "link-to-run")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < smallFiles; i++ {
		p := filepath.Join(root, "small", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.dat", i))
		size := 1 + r.IntN(4096)
		data := randomBytes(r, size)
		if i%10 == 0 { // some compressible content, some duplicates
			data = []byte(strings.Repeat(fmt.Sprintf("row %d;", i%7), size/8+1))
		}
		writeFile(t, p, data, 0o644)
	}
	// Give files distinct, old mtimes with sub-second parts.
	base := time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC)
	i := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 || d.IsDir() {
			return err
		}
		i++
		mt := base.Add(time.Duration(i) * time.Minute)
		return os.Chtimes(p, mt, mt)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Directory mtimes last (writing files changed them).
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == root {
			return err
		}
		return os.Chtimes(p, base, base)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// countObjects counts committed objects (packs, index segments,
// snapshots) in a file:// repository; crash leftovers (*.tmp) do not count.
func countObjects(t *testing.T, repoURL string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"data", "meta", "index", "snapshots"} {
		dir := filepath.Join(strings.TrimPrefix(repoURL, "file://"), sub)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if !d.IsDir() && !strings.HasSuffix(p, ".tmp") {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}
