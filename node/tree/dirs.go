package tree

import (
	"os"
	"path"
	"sync"
	"sync/atomic"
)

// dirHandles opens the directories of a tree through its os.Root for the
// workers that read files in them. Files come in path order, so those of
// one directory come together: a feeder opens each directory once for its
// run of files (dirCursor) instead of once per file (os.Root resolves every
// component of the path on each open, the largest cost of reading a small
// file), and the handle is closed when the feeder and the last job holding
// it release it. Handles still open when the work ends (a failure drops
// jobs without running them) are closed by closeAll.
type dirHandles struct {
	root    *os.Root // nil: every handle fails with rootErr
	rootErr error

	mu   sync.Mutex
	open map[*dirHandle]bool
}

func newDirHandles(root *os.Root, rootErr error) *dirHandles {
	return &dirHandles{root: root, rootErr: rootErr, open: map[*dirHandle]bool{}}
}

// dirHandle is an open directory shared by the jobs of its files.
type dirHandle struct {
	f    *os.File
	err  error
	refs atomic.Int32
	set  *dirHandles
}

// openDir opens the slash path dir, held once by the caller.
func (s *dirHandles) openDir(dir string) *dirHandle {
	d := &dirHandle{set: s}
	d.refs.Store(1)
	if s.root == nil {
		d.err = s.rootErr
		return d
	}
	if d.f, d.err = s.root.Open(dir); d.err == nil {
		s.mu.Lock()
		s.open[d] = true
		s.mu.Unlock()
	}
	return d
}

func (d *dirHandle) acquire() *dirHandle {
	d.refs.Add(1)
	return d
}

func (d *dirHandle) release() {
	if d.refs.Add(-1) == 0 && d.f != nil {
		d.set.mu.Lock()
		delete(d.set.open, d)
		d.set.mu.Unlock()
		d.f.Close()
	}
}

// closeAll closes the handles no job released.
func (s *dirHandles) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.open {
		d.f.Close()
		delete(s.open, d)
	}
}

// dirCursor hands out the directory handles of files taken in path order,
// reopening only when the directory changes. It belongs to one goroutine.
type dirCursor struct {
	set  *dirHandles
	cur  *dirHandle // held by the cursor
	name string
}

// handle returns the handle of rel's directory, acquired for the caller.
func (c *dirCursor) handle(rel string) *dirHandle {
	if d := path.Dir(rel); c.cur == nil || d != c.name {
		if c.cur != nil {
			c.cur.release()
		}
		c.cur, c.name = c.set.openDir(d), d
	}
	return c.cur.acquire()
}

// close releases the cursor's own hold.
func (c *dirCursor) close() {
	if c.cur != nil {
		c.cur.release()
		c.cur = nil
	}
}
