package fileset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"syscall"
)

// Verified remembers the filesets a scan found complete and intact, by a
// key naming each of their files' path, inode, size and modification
// time. M3 writes a fileset once and never changes it in place, so a
// fileset whose files all still have the same identity need not be read
// again; the node's hash cache trusts the same identity for the bytes it
// backs up. A changed file (rewritten, replaced, touched) changes the key.
type Verified interface {
	Has(key string) bool
	Add(key string)
}

// verifiedKey is the key of the checker's fileset, "" when there is no
// cache or a file's identity cannot be read.
func (s *scanner) verifiedKey(c *checker) string {
	if s.verified == nil {
		return ""
	}
	suffixes := make([]string, 0, len(c.present))
	for suffix := range c.present {
		suffixes = append(suffixes, suffix)
	}
	slices.Sort(suffixes)
	h := sha256.New()
	for _, suffix := range suffixes {
		fi, err := fs.Stat(s.fsys, c.path(suffix))
		if err != nil {
			return ""
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return ""
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\x00", c.path(suffix), st.Ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// whole reports whether every present file belongs to the fileset (no
// stray segment file beside an index fileset): only then may its key
// stand for it.
func (c *checker) whole() bool {
	if c.listed == nil {
		return true
	}
	for suffix := range c.present {
		if !c.listed[suffix] {
			return false
		}
	}
	return true
}
