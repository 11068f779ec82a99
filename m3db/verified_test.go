package m3db

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// TestVerifiedCache: the first check of filesets written by M3's writer
// records the intact ones in the cache file; the next check finds every
// one of them there and takes the same filesets.
func TestVerifiedCache(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(m3dbtest.FilesetGen(t), "-dir", root, "-ns", "metrics", "-shard", "1", "-block", "1700006400000000000",
		"-blocksize", "2h", "-series", "10", "-points", "10", "-snapshot", "-index", "-damage", "no-checkpoint")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("filesetgen: %v\n%s", err, out)
	}
	cachePath := filepath.Join(t.TempDir(), "plugin", "m3db", "verified-filesets")
	check := func() (NodeMeta, *verifiedCache) {
		tree := filepath.Join(t.TempDir(), "files")
		if err := linkDir(root, tree); err != nil {
			t.Fatal(err)
		}
		c := loadVerified(cachePath)
		meta, err := keepIntact(tree, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.save(); err != nil {
			t.Fatal(err)
		}
		return meta, c
	}
	first, c1 := check()
	if len(c1.old) != 0 || len(c1.seen) == 0 || first.SkippedTotal == 0 {
		t.Fatalf("first check: %d cached before, %d verified, %d skipped", len(c1.old), len(c1.seen), first.SkippedTotal)
	}
	second, c2 := check()
	if len(c2.old) != len(c1.seen) || len(c2.seen) != len(c1.seen) {
		t.Fatalf("second check: %d cached, %d hit, want %d", len(c2.old), len(c2.seen), len(c1.seen))
	}
	if second.SkippedTotal != first.SkippedTotal || second.Filesets["data"] != first.Filesets["data"] || second.DataBytes["metrics"] != first.DataBytes["metrics"] {
		t.Fatalf("second check %+v, first %+v", second, first)
	}
	if b, err := os.ReadFile(cachePath); err != nil || len(b) != 65*len(c1.seen) {
		t.Fatalf("cache file: %d bytes, %v", len(b), err)
	}
}
