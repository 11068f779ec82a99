// Package hashcache remembers, across backups, the hashes of files that have
// not changed, so that a snapshot of a mostly unchanged tree only has to
// stat its files instead of reading them.
//
// The cache maps a path to the identity the file had when it was hashed
// (FileID: device, inode, size, mtime, ctime, type) and to its content id
// and chunk ids. A lookup hits only if the identity is exactly the same.
// It is a bbolt file (normally <data_dir>/hashcache.db) that belongs to
// one process at a time.
//
// It is only a cache. A damaged file, or one written by another format
// version, is recreated empty with a warning; a write that fails is
// dropped and reported by Flush; a read that fails is a miss. Nothing here
// ever has to fail a backup.
//
// # Writes
//
// bbolt commits are expensive (a commit syncs the file), so Store only
// buffers: a background goroutine commits every BatchSize entries, and
// Flush and Close commit the rest. Entries waiting to be committed are
// visible to Lookup. Entries stored less than a batch before a crash are
// lost, which only costs re-hashing those files.
//
// # Growth
//
// Entries are never dropped on their own: the caller prunes the paths it
// knows are gone with Prune (tree.Snapshot prunes, after each successful
// snapshot, the entries below its root that it selected but did not see).
// Paths outside every configured root are only dropped by a Prune the
// agent makes itself.
package hashcache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/crayfish-backup/crayfish/storage"
)

// formatVersion names the layout of the buckets and values. A file with
// another one is recreated.
const formatVersion = "crayfish-hashcache-1"

// BatchSize is how many stored entries are buffered before the background
// goroutine commits them in one transaction.
const BatchSize = 1000

// maxPendingBatches bounds the buffer when commits cannot keep up: beyond
// that many batches, Store commits in the calling goroutine.
const maxPendingBatches = 16

// openTimeout is how long Open waits for the file lock held by another
// process before giving up (the caller then runs without a cache).
const openTimeout = 500 * time.Millisecond

var (
	bucketMeta  = []byte("meta")
	bucketFiles = []byte("files")
	keyFormat   = []byte("format")
)

// ErrInUse means another process holds the cache file open.
var ErrInUse = errors.New("hashcache: file in use by another process")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Cache is a persistent map from path to (FileID, content id, chunk ids).
// It is safe for concurrent use. A nil *Cache is a valid cache that never
// hits and stores nothing.
type Cache struct {
	path      string
	db        *bolt.DB
	batchSize int

	mu       sync.Mutex
	pending  map[string][]byte // encoded values waiting for a commit; nil: delete
	flushing map[string][]byte // the batch being committed, still visible to Lookup
	err      error             // first failed commit since the last Flush
	closed   bool

	commitMu sync.Mutex // one commit at a time
	kick     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup

	broken    atomic.Bool  // bbolt panicked: the file is damaged
	commits   atomic.Int64 // successful commits, for tests
	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the cache file at path. warning is non-nil when
// the existing file was unreadable, damaged or of another format and was
// replaced by an empty one: the caller should log it and carry on. err is
// non-nil when there is no usable cache (the file cannot be created, or
// another process holds it: ErrInUse); the caller should then run without
// one.
func Open(path string) (c *Cache, warning, err error) {
	return open(path, BatchSize)
}

func open(path string, batchSize int) (*Cache, error, error) {
	var warning error
	db, err := openChecked(path)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// Opening or locking the file itself failed (missing directory,
		// permissions, read-only filesystem): removing it would not help.
		return nil, nil, fmt.Errorf("hashcache: %w", err)
	}
	if err != nil {
		warning = fmt.Errorf("hashcache %s: %w; recreated empty", path, err)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, warning, fmt.Errorf("hashcache: remove damaged file: %w", rerr)
		}
		if db, err = openChecked(path); err != nil {
			return nil, warning, fmt.Errorf("hashcache: %w", err)
		}
	}
	c := &Cache{path: path, db: db, batchSize: max(batchSize, 1),
		pending: map[string][]byte{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	c.wg.Go(c.committer)
	return c, warning, nil
}

// openChecked opens the bbolt file, creates the buckets of a new one, and
// checks an existing one first (verify). Errors that are not *fs.PathError
// or berrors.ErrTimeout mean the file is unusable.
func openChecked(path string) (db *bolt.DB, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := verify(path); err != nil {
			return nil, err
		}
	}
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some damaged pages
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("damaged file: %v", r)
		}
	}()
	// The freelist stays synced (bbolt's default): a file without one makes
	// bbolt rebuild it at open in a goroutine of its own, where a damaged
	// page panics beyond anyone's recover.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// verify reads every page of an existing file that the cache will use, in
// this goroutine and under recover: bbolt checks each page as it loads it
// and panics on a damaged one. It also checks the format marker and the
// checksum of every value. bbolt's own Tx.Check is not used because it
// runs in a goroutine of its own, where such a panic would kill the
// process. The file is opened read-only, which loads no freelist.
func verify(path string) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: openTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged file: %v", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // initBuckets decides: an empty file is fine, another one is not
		}
		if got := meta.Get(keyFormat); string(got) != formatVersion {
			return fmt.Errorf("format %q, this version uses %q", got, formatVersion)
		}
		files := tx.Bucket(bucketFiles)
		if files == nil {
			return errors.New("files bucket missing")
		}
		cur := files.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if v == nil {
				return fmt.Errorf("unexpected bucket %q", k)
			}
			if len(v) < idSize {
				return fmt.Errorf("entry %q: short value", k)
			}
			if _, _, ok := decode(string(k), v, getID(v)); !ok {
				return fmt.Errorf("entry %q: bad value or checksum", k)
			}
		}
		return nil
	})
}

func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("not a hash cache (no format marker)")
			}
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
				return err
			}
			_, err = tx.CreateBucket(bucketFiles)
			return err
		}
		if got := meta.Get(keyFormat); string(got) != formatVersion {
			return fmt.Errorf("format %q, this version uses %q", got, formatVersion)
		}
		if tx.Bucket(bucketFiles) == nil {
			return errors.New("files bucket missing")
		}
		return nil
	})
}

// guard runs a bbolt call, turning a panic (which bbolt raises on some
// damaged pages) into an error and disabling the cache: from then on every
// lookup misses, nothing is stored, and Close removes the file so that the
// next Open starts afresh.
func (c *Cache) guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.broken.Store(true)
			err = fmt.Errorf("hashcache %s: damaged: %v", c.path, r)
		}
	}()
	return f()
}

// Lookup returns the content id and chunk ids stored for path if the
// identity stored with them equals id exactly.
func (c *Cache) Lookup(path string, id FileID) (content storage.ObjectID, chunks []storage.ObjectID, ok bool) {
	if c == nil || c.broken.Load() {
		return content, nil, false
	}
	c.mu.Lock()
	v, found := c.pending[path]
	if !found {
		v, found = c.flushing[path]
	}
	c.mu.Unlock()
	if found {
		return decode(path, v, id) // a forgotten entry (nil) misses
	}
	c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketFiles).Get([]byte(path)); v != nil {
				content, chunks, ok = decode(path, v, id) // copies out of the mmap
			}
			return nil
		})
	})
	return content, chunks, ok
}

// Store records that the file at path, with identity id, has the given
// content id and chunk ids (as in storage.FileEntry: id.Size determines
// how many chunks there are). Inconsistent input is ignored. The entry is
// visible to Lookup at once and written to the file later (see Flush).
func (c *Cache) Store(path string, id FileID, content storage.ObjectID, chunks []storage.ObjectID) {
	if c == nil || c.broken.Load() || path == "" || len(path) > bolt.MaxKeySize || !consistent(id, content, chunks) {
		return
	}
	v := encode(path, id, content, chunks)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pending[path] = v
	n := len(c.pending)
	c.mu.Unlock()
	switch {
	case n >= maxPendingBatches*c.batchSize:
		c.commit() // commits are falling behind: slow the producers down
	case n >= c.batchSize:
		select {
		case c.kick <- struct{}{}:
		default: // a commit is already due
		}
	}
}

func (c *Cache) committer() {
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
			// Kicks sent while the previous commit ran may find a
			// buffer that is not full again yet.
			c.mu.Lock()
			full := len(c.pending) >= c.batchSize
			c.mu.Unlock()
			if full {
				c.commit()
			}
		}
	}
}

// commit writes the buffered entries in one transaction.
func (c *Cache) commit() error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	batch := c.pending
	if len(batch) == 0 {
		c.mu.Unlock()
		return nil
	}
	c.pending = make(map[string][]byte, len(batch))
	c.flushing = batch
	c.mu.Unlock()

	var err error
	if c.broken.Load() {
		err = fmt.Errorf("hashcache %s: damaged, entries dropped", c.path)
	} else {
		keys := make([]string, 0, len(batch))
		for k := range batch {
			keys = append(keys, k)
		}
		slices.Sort(keys) // bbolt inserts sorted keys fastest
		err = c.guard(func() error {
			return c.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketFiles)
				for _, k := range keys {
					var err error
					if v := batch[k]; v == nil {
						err = b.Delete([]byte(k)) // Forget
					} else {
						err = b.Put([]byte(k), v)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	if err == nil {
		c.commits.Add(1)
	}
	c.mu.Lock()
	c.flushing = nil
	if err != nil && c.err == nil {
		c.err = fmt.Errorf("hashcache: commit of %d entries: %w", len(batch), err)
	}
	c.mu.Unlock()
	return err
}

// Flush commits every entry stored so far. It returns the first commit
// error since the previous Flush (those entries are lost; the cache stays
// usable).
func (c *Cache) Flush() error {
	if c == nil {
		return nil
	}
	c.commit()
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.err
	c.err = nil
	return err
}

// Prune removes the entries whose path starts with prefix and for which
// keep returns false. It flushes first. keep is called without any lock
// held, so it may be slow, but it must not call the cache.
func (c *Cache) Prune(prefix string, keep func(path string) bool) (removed int, err error) {
	if c == nil || c.broken.Load() {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	var doomed [][]byte
	p := []byte(prefix)
	err = c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) error {
			cur := tx.Bucket(bucketFiles).Cursor()
			for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
				if !keep(string(k)) {
					doomed = append(doomed, bytes.Clone(k))
				}
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	// Deleting while a cursor iterates can skip keys in bbolt, hence the
	// two passes; large deletions are split over several transactions.
	const perTx = 10000
	for start := 0; start < len(doomed); start += perTx {
		part := doomed[start:min(start+perTx, len(doomed))]
		err := c.guard(func() error {
			return c.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketFiles)
				for _, k := range part {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			return removed, fmt.Errorf("hashcache: prune: %w", err)
		}
		removed += len(part)
	}
	return removed, nil
}

// Len returns the number of entries, after a Flush.
func (c *Cache) Len() (int, error) {
	if c == nil {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	n := 0
	err := c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketFiles).Stats().KeyN
			return nil
		})
	})
	return n, err
}

// Close flushes and closes the file. If the cache found the file damaged
// while in use, the file is removed so that the next Open recreates it.
// Calling Close again returns the first result.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		close(c.done)
		c.wg.Wait()
		ferr := c.Flush()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		cerr := c.db.Close()
		if c.broken.Load() {
			os.Remove(c.path)
		}
		c.closeErr = errors.Join(ferr, cerr)
	})
	return c.closeErr
}

// consistent checks what storage.FileEntry requires of a regular file's
// ids: one non-zero id per ChunkSize piece, the only chunk of a small file
// equal to its content, and empty content with the zero id and no chunks.
func consistent(id FileID, content storage.ObjectID, chunks []storage.ObjectID) bool {
	if id.Size < 0 || id.Size > storage.MaxFileSize || int64(len(chunks)) != storage.NumChunks(id.Size) {
		return false
	}
	if id.Size == 0 {
		return content.IsZero()
	}
	if content.IsZero() || (len(chunks) == 1 && chunks[0] != content) {
		return false
	}
	for _, ch := range chunks {
		if ch.IsZero() {
			return false
		}
	}
	return true
}

// A value is the FileID, the content id, the chunk ids when there is more
// than one (a single chunk is the content), and a CRC-32C of the key and
// all of that, so that a damaged page cannot pair one file's identity with
// another's hashes unnoticed.
const idLen = len(storage.ObjectID{})

func encode(path string, id FileID, content storage.ObjectID, chunks []storage.ObjectID) []byte {
	n := 0
	if len(chunks) > 1 {
		n = len(chunks)
	}
	v := make([]byte, idSize+idLen+n*idLen, idSize+idLen+n*idLen+4)
	id.put(v)
	copy(v[idSize:], content[:])
	for i := range n {
		copy(v[idSize+idLen+i*idLen:], chunks[i][:])
	}
	return binary.BigEndian.AppendUint32(v, checksum(path, v))
}

func checksum(path string, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum([]byte(path), crcTable), crcTable, payload)
}

// decode returns the ids in v if v is well formed and its identity is want.
// The result never aliases v.
func decode(path string, v []byte, want FileID) (content storage.ObjectID, chunks []storage.ObjectID, ok bool) {
	if len(v) < idSize+idLen+4 {
		return content, nil, false
	}
	payload, sum := v[:len(v)-4], binary.BigEndian.Uint32(v[len(v)-4:])
	id := getID(payload)
	if id != want {
		return content, nil, false
	}
	n := storage.NumChunks(id.Size)
	extra := int64(0)
	if n > 1 {
		extra = n
	}
	if id.Size < 0 || id.Size > storage.MaxFileSize || int64(len(payload)) != int64(idSize+idLen)+extra*int64(idLen) ||
		checksum(path, payload) != sum {
		return content, nil, false
	}
	copy(content[:], payload[idSize:])
	switch {
	case n == 1:
		chunks = []storage.ObjectID{content}
	case n > 1:
		chunks = make([]storage.ObjectID, n)
		for i := range chunks {
			copy(chunks[i][:], payload[idSize+idLen+i*idLen:])
		}
	}
	if !consistent(id, content, chunks) {
		return storage.ObjectID{}, nil, false
	}
	return content, chunks, true
}

// Forget removes the entry of path, so that the next snapshot reads the
// file whatever its identity: for a file whose cached hashes turned out to
// be wrong (its content changed with its identity kept). The removal is
// committed with the next batch.
func (c *Cache) Forget(path string) {
	if c == nil || c.broken.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pending[path] = nil // a nil value is a deletion when committed
}
