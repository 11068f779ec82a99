package m3db

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
)

// verifiedCache is the plugin's record of the filesets its last snapshot
// found complete and intact (fileset.Verified keys), kept in the agent's
// data dir, so an unchanged fileset is not read again by the next backup.
// Only the keys one snapshot saw are written back: the file stays the
// size of the node's filesets.
type verifiedCache struct {
	path string
	old  map[string]bool
	seen map[string]bool
}

// loadVerified reads the cache; a missing or unreadable one is empty (it
// only saves reading).
func loadVerified(path string) *verifiedCache {
	c := &verifiedCache{path: path, old: map[string]bool{}, seen: map[string]bool{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); len(k) == 64 {
			c.old[k] = true
		}
	}
	return c
}

func (c *verifiedCache) Has(key string) bool {
	if c.old[key] {
		c.seen[key] = true
		return true
	}
	return false
}

func (c *verifiedCache) Add(key string) { c.seen[key] = true }

// save writes the keys this snapshot saw.
func (c *verifiedCache) save() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	var b strings.Builder
	for k := range c.seen {
		b.WriteString(k)
		b.WriteByte('\n')
	}
	return fsutil.WriteFileAtomic(c.path, []byte(b.String()))
}
