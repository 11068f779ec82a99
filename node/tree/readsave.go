package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/storage"
)

// Read once: with SnapshotOptions.Save, the snapshot stores each chunk of
// a file it reads as soon as it has hashed it, so new bytes are read from
// disk once, and Upload finds them present (see "Read once" in the
// package documentation).

// SaveOptions make Snapshot save the chunks it reads (read once).
type SaveOptions struct {
	// Store receives the chunks the snapshot reads, unless it holds them
	// already. Snapshot calls HasBlob and SaveBlob from several goroutines.
	Store BlobStore
	// Limiter, if set, limits the bytes per second of chunks saved.
	Limiter *rate.Limiter
	// Throttled, if set, learns each wait the limiter imposed.
	Throttled func(time.Duration)
	// MaxFileSize, if positive, leaves files larger than this (by their
	// size when listed) to Upload: they are hashed, not saved, and linked
	// rather than read live, so that Upload reads them as they were.
	MaxFileSize int64
}

// saves reports whether the snapshot saves the chunks of a file of size
// bytes as it reads them.
func (o *SaveOptions) saves(size int64) bool {
	return o != nil && (o.MaxFileSize <= 0 || size <= o.MaxFileSize)
}

// saveCounter counts what a snapshot saved; UploadStats' fields, of the
// distinct chunks the store did not hold.
type saveCounter struct {
	mu sync.Mutex
	st UploadStats
}

func (c *saveCounter) add(size, stored int64, saved bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if saved {
		c.st.Uploaded++
		c.st.UploadedBytes += size
		c.st.StoredBytes += stored
	} else {
		c.st.AlreadyPresent++
		c.st.AlreadyPresentBytes += size
	}
}

func (c *saveCounter) stats() UploadStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// readSave reads src to its end in ChunkSize pieces, hashing each,
// writing it to out if not nil (a copy) and saving it into the store
// unless the store holds it. It returns what
// contentHasher would: the content id (the only chunk's id for a file of
// at most ChunkSize bytes, else the SHA-256 of the whole), the chunk ids
// and the length. A chunk saved from a read that later turns out
// inconsistent is harmless: it is content-addressed and unreferenced,
// and garbage collection removes it.
//
// A file that fstat said was small (sizeHint, or -1 for unknown) is read
// into a small buffer; if it fills up, the file grew meanwhile and
// readSave returns errGrewWhileRead: a read with sizeHint -1 is needed.
func (s *snapshotter) readSave(ctx context.Context, src io.Reader, out io.Writer, sizeHint int64, progress *progressTracker) (storage.ObjectID, []storage.ObjectID, int64, error) {
	pool := &chunkPool
	if sizeHint >= 0 && sizeHint < smallReadSize {
		pool = &smallReadPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	r := &ctxReader{ctx: ctx, r: src, progress: progress, count: &s.bytesRead}
	var (
		chunks []storage.ObjectID
		whole  hash.Hash // only for files of more than one chunk
		n      int64
	)
	for {
		m, err := io.ReadFull(r, buf)
		if m == len(buf) && len(buf) < storage.ChunkSize {
			return storage.ObjectID{}, nil, int64(m), errGrewWhileRead
		}
		if m > 0 {
			piece := buf[:m]
			id := storage.ObjectID(sha256.Sum256(piece))
			chunks = append(chunks, id)
			n += int64(m)
			if whole == nil && m == len(buf) {
				whole = sha256.New() // maybe more follows: the content id hashes it all
			}
			if whole != nil {
				whole.Write(piece)
			}
			if out != nil {
				if _, err := out.Write(piece); err != nil {
					return storage.ObjectID{}, nil, n, err
				}
			}
			if err := s.saveChunk(ctx, id, piece); err != nil {
				return storage.ObjectID{}, nil, n, err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return storage.ObjectID{}, nil, n, err
		}
	}
	var content storage.ObjectID
	switch {
	case n == 0:
		return content, nil, 0, nil
	case len(chunks) == 1:
		content = chunks[0]
	default:
		whole.Sum(content[:0])
	}
	return content, chunks, n, nil
}

// smallReadSize is the buffer files under it are read into: most files of
// a tree are small, and a ChunkSize buffer per reader for them was the
// largest item of a snapshot's memory.
const smallReadSize = 64 << 10

var smallReadPool = sync.Pool{New: func() any { b := make([]byte, smallReadSize); return &b }}

// errGrewWhileRead: a file outgrew the small buffer its size chose, so it
// changed while read.
var errGrewWhileRead = errors.New("file grew while read")

// saveChunk stores one chunk unless the store holds it, waiting for the
// bandwidth limit first.
func (s *snapshotter) saveChunk(ctx context.Context, id storage.ObjectID, data []byte) error {
	save := s.opts.Save
	size := int64(len(data))
	if save.Store.HasBlob(id) {
		s.saved.add(size, 0, false)
		return nil
	}
	if err := waitLimit(ctx, save.Limiter, save.Throttled, len(data)); err != nil {
		return err
	}
	saveFn := save.Store.SaveBlob
	if h, ok := save.Store.(hashedSaver); ok {
		saveFn = h.SaveHashedBlob // id was computed from data just now
	}
	stored, err := saveFn(ctx, storage.BlobData, id, data)
	if err != nil {
		return fmt.Errorf("save chunk %s: %w", id, err)
	}
	s.saved.add(size, stored, true)
	return nil
}

// hashedSaver is a BlobStore that can skip its own check that data
// hashes to id, for a caller that has just hashed data into id itself
// (storage.Repository).
type hashedSaver interface {
	SaveHashedBlob(ctx context.Context, t storage.BlobType, id storage.ObjectID, data []byte) (int64, error)
}

// waitLimit waits until the limiter allows n bytes, in pieces of at most
// its burst (WaitN rejects larger requests), reporting the waits of a
// millisecond or more to throttled.
func waitLimit(ctx context.Context, l *rate.Limiter, throttled func(time.Duration), n int) error {
	if l == nil || l.Limit() == rate.Inf {
		return ctx.Err()
	}
	for n > 0 {
		k := min(n, l.Burst())
		began := time.Now()
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		// A wait of under a millisecond is the call itself, not the limit.
		if waited := time.Since(began); waited >= time.Millisecond && throttled != nil {
			throttled(waited)
		}
		n -= k
	}
	return nil
}
