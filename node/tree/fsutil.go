package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/storage"
)

// modeMask is the part of a unix mode a manifest records: permissions plus
// setuid, setgid and sticky.
const modeMask = 0o7777

// unixMode maps the permission-related bits of an os.FileMode to the classic
// unix 0o7777 layout the manifest stores (os.FileMode keeps setuid, setgid
// and sticky in high bits of its own).
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u
}

// fileMode is the inverse of unixMode, for os.Chmod.
func fileMode(u uint32) fs.FileMode {
	m := fs.FileMode(u) & fs.ModePerm
	if u&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if u&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if u&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// errNotRegular: a path expected to be a regular file is something else.
var errNotRegular = errors.New("not a regular file")

// openFlags open a file for reading without following a symlink in the
// last component and without blocking: opening a FIFO for reading would
// otherwise wait for a writer (O_NONBLOCK changes nothing for regular
// files, the only ones read).
const openFlags = os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// openRegular opens name for reading without following a symlink in its last
// component and checks that it is a regular file, so a path swapped for a
// symlink or a FIFO between our Lstat and the open cannot redirect or block
// the read. Ancestors are the caller's business.
func openRegular(name string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	return checkRegular(f)
}

// openRegularIn is openRegular for the slash path rel inside root, for
// trees that others can change while we read them (an in-place snapshot's
// root, a live file being copied, whatever directory Upload is given):
// the directories leading to rel are resolved by os.Root, which never lets
// a symlink lead outside root, and the last component is opened with
// O_NOFOLLOW.
func openRegularIn(root *os.Root, rel string) (*os.File, fs.FileInfo, error) {
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	return openRegularAt(d, base, filepath.Join(root.Name(), filepath.FromSlash(rel)))
}

// openRegularAt opens base in the open directory d like openRegular; name
// is what the file is called in errors.
func openRegularAt(d *os.File, base, name string) (*os.File, fs.FileInfo, error) {
	fd, err := openat(d, base, name)
	if err != nil {
		return nil, nil, err
	}
	return checkRegular(os.NewFile(uintptr(fd), name))
}

// openat opens base in the open directory d for reading (openFlags: no
// symlink followed in base), retrying when interrupted.
func openat(d *os.File, base, name string) (int, error) {
	for {
		fd, err := syscall.Openat(int(d.Fd()), base, openFlags|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "openat", Path: name, Err: err}
		}
		return fd, nil
	}
}

func checkRegular(f *os.File) (*os.File, fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w (%v)", f.Name(), errNotRegular, fi.Mode().Type())
	}
	return f, fi, nil
}

// copyBufferSize is the chunk used to stream file content; bigger than
// io.Copy's default to cut syscalls on large database files.
const copyBufferSize = 256 << 10

// bufPool recycles copy buffers: allocating (and zeroing) one per file
// dominates the cost of hashing many small files.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// copyBuffered is io.CopyBuffer with a pooled buffer.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	return io.CopyBuffer(dst, src, *buf)
}

// ctxReader makes a long read stop promptly when the context ends and
// reports the bytes it passes on to progress and, if set, to count.
type ctxReader struct {
	ctx      context.Context
	r        io.Reader
	progress *progressTracker
	count    *atomic.Int64
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.progress.addBytes(int64(n))
	if r.count != nil {
		r.count.Add(int64(n))
	}
	return n, err
}

// hashReader returns the SHA-256 and length of everything r yields. The id
// of empty content is the zero ObjectID, as the manifest format requires.
func hashReader(ctx context.Context, r io.Reader, progress *progressTracker) (storage.ObjectID, int64, error) {
	h := sha256.New()
	n, err := copyBuffered(h, &ctxReader{ctx: ctx, r: r, progress: progress})
	var id storage.ObjectID
	if err != nil || n == 0 {
		return id, n, err
	}
	h.Sum(id[:0])
	return id, n, nil
}

// contentHasher computes, in one pass over a file's bytes, the whole-file
// SHA-256 (FileEntry.Content) and the SHA-256 of each ChunkSize piece
// (FileEntry.Chunks). The first chunk is never hashed separately: its id is
// the whole-file hash's state after ChunkSize bytes (Sum does not disturb
// the running hash), so a file of at most ChunkSize bytes is hashed once
// and a larger one hashes every byte after the first chunk twice.
type contentHasher struct {
	whole  hash.Hash
	chunk  hash.Hash // bytes of the current chunk after the first; nil until needed
	n      int64     // bytes written so far
	chunks []storage.ObjectID
}

func newContentHasher() *contentHasher { return &contentHasher{whole: sha256.New()} }

func (h *contentHasher) Write(p []byte) (int, error) {
	written := len(p)
	for len(p) > 0 {
		take := min(int64(len(p)), storage.ChunkSize-h.n%storage.ChunkSize)
		q := p[:take]
		h.whole.Write(q)
		if h.n >= storage.ChunkSize {
			if h.chunk == nil {
				h.chunk = sha256.New()
			}
			h.chunk.Write(q)
		}
		h.n += take
		if h.n%storage.ChunkSize == 0 { // a chunk is complete
			h.chunks = append(h.chunks, h.sumChunk())
		}
		p = p[take:]
	}
	return written, nil
}

// sumChunk returns the id of the chunk being hashed and starts the next.
func (h *contentHasher) sumChunk() storage.ObjectID {
	var id storage.ObjectID
	if h.n <= storage.ChunkSize {
		h.whole.Sum(id[:0])
	} else {
		h.chunk.Sum(id[:0])
		h.chunk.Reset()
	}
	return id
}

// finish returns the content id, the chunk ids and the length of everything
// written. Empty content has the zero id and no chunks, as the manifest
// format requires.
func (h *contentHasher) finish() (storage.ObjectID, []storage.ObjectID, int64) {
	var content storage.ObjectID
	if h.n == 0 {
		return content, nil, 0
	}
	if h.n%storage.ChunkSize != 0 { // the last, short chunk
		h.chunks = append(h.chunks, h.sumChunk())
	}
	h.whole.Sum(content[:0])
	return content, h.chunks, h.n
}

// hashContent reads r to its end and returns what contentHasher computes.
func hashContent(ctx context.Context, r io.Reader, progress *progressTracker) (storage.ObjectID, []storage.ObjectID, int64, error) {
	h := newContentHasher()
	if _, err := copyBuffered(h, &ctxReader{ctx: ctx, r: r, progress: progress}); err != nil {
		return storage.ObjectID{}, nil, 0, err
	}
	content, chunks, n := h.finish()
	return content, chunks, n, nil
}

// chunkLen is the length of chunk i of a file of size bytes: ChunkSize for
// all but the last.
func chunkLen(size int64, i int) int64 {
	return min(storage.ChunkSize, size-int64(i)*storage.ChunkSize)
}

// tempPrefix and tempSuffix frame the names of the temporary files Restore
// writes next to their final path: ".<base>.crayfish-tmp-<random>". The
// leading dot hides them; an interrupted restore leaves them behind and the
// next one removes them as extras.
const (
	tempPrefix = "."
	tempSuffix = ".crayfish-tmp-"
	// maxTempBase bounds the part of the base name copied into a temporary
	// name so that it stays under NAME_MAX (255 bytes) even for long names.
	maxTempBase = 128
)

// tempPattern returns an os.CreateTemp pattern for a file named base.
func tempPattern(base string) string {
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
		for !utf8.ValidString(base) { // do not cut a UTF-8 sequence in half
			base = base[:len(base)-1]
		}
	}
	return tempPrefix + base + tempSuffix + "*"
}

// hasDotDot reports whether the slash path p has a ".." element.
func hasDotDot(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// parentDirs returns the proper ancestors of the slash path p, outermost
// first ("a/b/c" → "a", "a/b").
func parentDirs(p string) []string {
	var out []string
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		out = append(out, d)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
