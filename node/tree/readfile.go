package tree

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

// Consistent reads (see the package documentation): a file is read again
// if its identity changed while it was read, or if it was modified so
// recently that a write in the same timestamp tick could have gone unseen.
const (
	// maxReadAttempts bounds the reads of one file; after the last one a
	// file that still changed is recorded with a warning.
	maxReadAttempts = 3
	// racyWindow is how long after a file's mtime a read must start for a
	// later write to be sure to change the mtime: a few timestamp ticks
	// (Linux updates file times from a clock that advances once per
	// jiffy, 1 to 10 ms, unless multigrain timestamps are in use).
	racyWindow = 50 * time.Millisecond
	// coarseRacyWindow is racyWindow for filesystems that keep whole
	// seconds (both mtime and ctime without nanoseconds); FAT keeps two.
	coarseRacyWindow = 2 * time.Second
	// changedBackoff is the pause before reading again a file that
	// changed, times the number of attempts so far.
	changedBackoff = 20 * time.Millisecond
)

// racy reports whether a write to the file with identity id, during a read
// that started at start, could leave its mtime unchanged: the mtime is
// within a window of start, so such a write could fall in the same
// timestamp tick. An mtime further in the future (clock skew, touch -d)
// is not racy: a write now would stamp the present, which differs.
func racy(id hashcache.FileID, start time.Time) bool {
	w := racyWindowFor(id).Nanoseconds()
	return id.MTime > start.UnixNano()-w && id.MTime < start.UnixNano()+w
}

func racyWindowFor(id hashcache.FileID) time.Duration {
	if id.MTime%1e9 == 0 && id.CTime%1e9 == 0 {
		return coarseRacyWindow
	}
	return racyWindow
}

// readResult is what readFile found out about a file.
type readResult struct {
	content storage.ObjectID
	chunks  []storage.ObjectID
	size    int64            // bytes read (and copied)
	info    fs.FileInfo      // fstat of the inode read, taken before reading it
	id      hashcache.FileID // the identity in info
	// changed: the file changed, or was modified too recently to tell,
	// during every attempt, so the content may mix versions of it.
	changed bool
	// cacheable: the file did not change while read and had not been
	// modified just before, so its hashes can be cached under id.
	cacheable bool
}

// readHandle is a file open for reading: an *os.File or a rawFile.
type readHandle interface {
	io.Reader
	Stat() (fs.FileInfo, error)
	Close() error
}

// open opens the file of j for reading: the link in dst, or the live file
// (in place, read live, or to copy it) through dir, its directory in the
// live root.
func (s *snapshotter) open(j fileJob, dir *dirHandle) (readHandle, fs.FileInfo, error) {
	if j.linked {
		return openRegular(s.dstPath(j.rel))
	}
	if dir.err != nil {
		return nil, nil, dir.err
	}
	return openReadAt(dir.f, path.Base(j.rel), s.cacheKey(j.rel))
}

// readFile reads the file of j once through, hashing it and, for a file
// that could not be linked, copying it into dst; a file copied whose
// identity is in the cache is only copied. It checks that the file did not
// change while it was read: its identity (inode, size, mtime, ctime) from
// an fstat before reading must equal that from an fstat after, and a file
// modified less than racyWindow before the read started is read again once
// the window has passed. A file that changed is read again, up to
// maxReadAttempts times in all; after that it is recorded as last read,
// with r.changed set.
func (s *snapshotter) readFile(ctx context.Context, j fileJob, dir *dirHandle, progress *progressTracker) (r readResult, err error) {
	var out *os.File
	if j.copy {
		out, err = os.OpenFile(s.dstPath(j.rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return r, err
		}
		defer func() {
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(out.Name())
			}
		}()
	}
	var reported int64 // bytes of this file reported to progress
	for attempt := 1; ; attempt++ {
		f, info, err := s.open(j, dir)
		if err != nil {
			return r, err
		}
		id, idOK := hashcache.FileIDOf(info)
		start := time.Now()
		cached := false
		if attempt == 1 && j.copy && s.cache != nil && idOK {
			r.content, r.chunks, cached = s.cache.Lookup(s.cacheKey(j.rel), id)
		}
		if out != nil && attempt > 1 {
			if err := out.Truncate(0); err != nil {
				f.Close()
				return r, err
			}
			if _, err := out.Seek(0, io.SeekStart); err != nil {
				f.Close()
				return r, err
			}
		}
		p := progress
		if attempt > 1 {
			p = nil // bytes already reported once; corrected at the end
			s.rereads.Add(1)
		} else {
			s.filesRead.Add(1)
		}
		var src io.Reader = f
		if testMidReadHook != nil {
			src = &hookReader{r: f, hook: func() { testMidReadHook(j.rel, attempt) }}
		}
		save := s.opts.Save.saves(s.entries[j.entry].Size)
		sizeHint := info.Size()
		if attempt > 1 {
			sizeHint = -1 // never errGrewWhileRead again
		}
		content, chunks, n, rerr := s.readOnce(ctx, src, out, !cached, save, sizeHint, p)
		after, serr := f.Stat()
		f.Close()
		grew := errors.Is(rerr, errGrewWhileRead)
		if grew {
			rerr = nil
		}
		if rerr != nil {
			return r, rerr
		}
		if serr != nil {
			return r, serr
		}
		if attempt == 1 {
			reported = n
		}
		idAfter, _ := hashcache.FileIDOf(after)
		changed := grew || idAfter != id || n != id.Size
		isRacy := !changed && racy(id, start)
		if !cached {
			r.content, r.chunks = content, chunks
		}
		r.size, r.info, r.id = n, info, id
		if (!changed && !isRacy) || attempt == maxReadAttempts {
			// Still racy after the last attempt is no better than changed:
			// writes within one timestamp tick leave the mtime alone.
			r.changed = changed || isRacy
			r.cacheable = !r.changed && idOK && !cached // (a hit is cached already)
			if cached && !changed {
				s.hits.Add(1)
				s.hitBytes.Add(n)
			}
			progress.add(1, n-reported)
			return r, nil
		}
		wait := time.Duration(attempt) * changedBackoff
		if isRacy {
			w := racyWindowFor(id)
			wait = max(0, min(w, time.Until(time.Unix(0, id.MTime).Add(w))+time.Millisecond))
		}
		if err := pause(ctx, wait); err != nil {
			return r, err
		}
	}
}

// readOnce reads f to its end, writing what it reads to out if not nil and
// hashing it if hash is set (and saving its chunks if save is set too).
func (s *snapshotter) readOnce(ctx context.Context, f io.Reader, out *os.File, hash, save bool, sizeHint int64, progress *progressTracker) (storage.ObjectID, []storage.ObjectID, int64, error) {
	if hash && save {
		if out != nil {
			// A copy is written as it is read: no small buffer, which may
			// have to be read again.
			return s.readSave(ctx, f, out, -1, progress)
		}
		return s.readSave(ctx, f, nil, sizeHint, progress)
	}
	var h *contentHasher
	var w io.Writer
	if hash {
		h = newContentHasher()
	}
	switch {
	case out != nil && h != nil:
		w = io.MultiWriter(out, h)
	case out != nil:
		w = struct{ io.Writer }{out} // hide ReadFrom, so our buffer is used
	default:
		w = h
	}
	n, err := copyBuffered(w, &ctxReader{ctx: ctx, r: f, progress: progress, count: &s.bytesRead})
	if err != nil || h == nil {
		return storage.ObjectID{}, nil, n, err
	}
	content, chunks, _ := h.finish()
	return content, chunks, n, nil
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// testMidReadHook, if set by a test, is called once per read attempt of a
// file, after its first block was read.
var testMidReadHook func(rel string, attempt int)

type hookReader struct {
	r     io.Reader
	hook  func()
	fired bool
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.fired {
		h.fired = true
		h.hook()
	}
	return n, err
}
