package storage

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// pendingAt marks a blob saved by this process whose pack is not yet
// uploaded: HasBlob is true for it so concurrent savers do not duplicate it.
type pendingAt struct{}

// sessionPack is an uploaded pack whose blobs no index segment lists yet.
type sessionPack struct {
	id      ObjectID
	typ     BlobType
	size    int64
	entries []pack.Entry
}

// packers holds the one open pack per blob type. Savers seal records in
// parallel (the CPU-heavy part) and only append under the lock, so memory
// holds one pack per type plus the packs being uploaded, whatever the
// number of savers.
type packers struct {
	mu   [2]sync.Mutex
	open [2]*pack.Writer
	// uploads bounds packs held in memory while their PUT runs; a saver
	// that fills a pack waits for a slot (backpressure).
	uploads chan struct{}
}

// MaxPackUploads is how many finished packs may upload at once (each is
// up to 16 MiB in memory). On file:// each upload ends in an fsync: with
// 2 a 1 GiB backup took 3.8 s here, with 4 2.2-2.3 s, with 8 no faster
// (docs/performance.md, "Pack uploads").
const MaxPackUploads = 4

func newPackers() *packers { return &packers{uploads: make(chan struct{}, MaxPackUploads)} }

var (
	recordBufs = sync.Pool{New: func() any { return new([]byte) }}
	// packBufs recycles pack-sized buffers: growing a fresh buffer for
	// every 12 MiB pack made most of the upload path's allocations.
	packBufs = sync.Pool{New: func() any { b := make([]byte, 0, pack.BufferSize); return &b }}
)

func packKey(t BlobType, id ObjectID) string {
	h := id.String()
	prefix := dataPrefix
	if t == BlobMeta {
		prefix = metaPrefix
	}
	return prefix + h[:2] + "/" + h
}

// HasBlob reports whether the repository has, or this process is saving,
// the blob. A copy recorded as damaged does not count: the content is
// stored again.
func (r *Repository) HasBlob(id ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.goodLocked(id) {
		return true
	}
	_, ok := r.pending[id]
	return ok
}

// PackOf returns the pack the loaded index places blob id in, to name it
// when the blob turns out damaged.
func (r *Repository) PackOf(id ObjectID) (ObjectID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	loc, ok := r.idx.Lookup(id)
	return ObjectID(loc.Pack), ok
}

// SaveBlob stores plaintext data as blob id of type t unless the
// repository already has it. The blob is durable only after Flush. It
// returns the number of bytes the blob takes in its pack (0 if deduplicated).
func (r *Repository) SaveBlob(ctx context.Context, t BlobType, id ObjectID, data []byte) (int64, error) {
	if sha256.Sum256(data) != id {
		return 0, fmt.Errorf("save blob %s: content does not hash to its id: %w", id, ErrCorrupt)
	}
	return r.SaveHashedBlob(ctx, t, id, data)
}

// SaveHashedBlob is SaveBlob for a caller that has just computed id as
// the SHA-256 of data itself, from the same buffer: it skips the check
// that data hashes to id (a second SHA-256 of every byte saved). Readers
// still verify every blob they load against its id.
func (r *Repository) SaveHashedBlob(ctx context.Context, t BlobType, id ObjectID, data []byte) (int64, error) {
	if t != BlobData && t != BlobMeta {
		return 0, fmt.Errorf("save blob %s: unknown type %d", id, t)
	}
	r.mu.Lock()
	if _, ok := r.pending[id]; ok || r.goodLocked(id) {
		r.mu.Unlock()
		return 0, nil
	}
	r.pending[id] = pendingAt{}
	r.mu.Unlock()

	buf := recordBufs.Get().(*[]byte)
	defer recordBufs.Put(buf)
	rec, err := pack.SealRecord(r.data, *buf, id, pack.BlobType(t), data)
	if err != nil {
		r.forget(id)
		return 0, fmt.Errorf("save blob %s: %w", id, err)
	}
	*buf = rec.Sealed

	p := r.packers
	p.mu[t].Lock()
	w := p.open[t]
	if w == nil {
		w = r.newPackWriter(t)
		p.open[t] = w
	}
	var full []*pack.Writer // at most two: the one that could not take rec, and a new one it filled
	if !w.Fits(len(rec.Sealed)) {
		full = append(full, w)
		w = r.newPackWriter(t)
		p.open[t] = w
	}
	_, err = w.AddRecord(rec)
	if err == nil && w.Size() >= pack.TargetSize {
		full = append(full, w)
		p.open[t] = nil
	}
	p.mu[t].Unlock()
	if err != nil {
		r.forget(id)
		return 0, fmt.Errorf("save blob %s: %w", id, err)
	}
	for i, fw := range full {
		if ferr := r.uploadPack(ctx, t, fw); ferr != nil {
			for _, rest := range full[i+1:] {
				r.abandon(rest)
			}
			return 0, ferr
		}
	}
	return int64(len(rec.Sealed)), nil
}

// newPackWriter starts a pack of blobs of type t. Data packs fill up, and
// take a pooled pack-sized buffer; meta packs (file lists) are mostly
// small, and grow a buffer of their own as needed.
func (r *Repository) newPackWriter(t BlobType) *pack.Writer {
	if t == BlobMeta {
		return pack.NewWriterBuffer(r.data, r.cfg.Encrypted(), make([]byte, 0, 256<<10))
	}
	return pack.NewWriterBuffer(r.data, r.cfg.Encrypted(), *packBufs.Get().(*[]byte))
}

// recyclePack returns a finished pack's buffer once nothing reads it.
func recyclePack(data []byte) {
	if cap(data) == pack.BufferSize {
		data = data[:0]
		packBufs.Put(&data)
	}
}

// uploadPack finishes and uploads w, waiting for an upload slot.
func (r *Repository) uploadPack(ctx context.Context, t BlobType, w *pack.Writer) error {
	select {
	case r.packers.uploads <- struct{}{}:
	case <-ctx.Done():
		r.abandon(w)
		return ctx.Err()
	}
	defer func() { <-r.packers.uploads }()
	return r.finishPack(ctx, t, w)
}

// abandon forgets the blobs of a pack that will never be uploaded, so a
// later save stores them again.
func (r *Repository) abandon(w *pack.Writer) {
	_, entries, _ := w.Finish()
	for _, e := range entries {
		r.forget(e.ID)
	}
}

// takeOpen removes the open writer of type t (Flush runs when no saver is
// active).
func (p *packers) takeOpen(t BlobType) *pack.Writer {
	p.mu[t].Lock()
	defer p.mu[t].Unlock()
	w := p.open[t]
	p.open[t] = nil
	return w
}

func (r *Repository) forget(ids ...ObjectID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.pending, id)
	}
}

// finishPack uploads w's pack under its content hash and indexes its blobs
// in memory; Flush writes them to an index segment.
func (r *Repository) finishPack(ctx context.Context, t BlobType, w *pack.Writer) error {
	data, entries, err := w.Finish()
	ids := make([]ObjectID, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	if err != nil {
		r.forget(ids...)
		return fmt.Errorf("finish pack: %w", err)
	}
	id := ObjectID(sha256.Sum256(data))
	// Content-addressed: re-putting the same pack is harmless, so no
	// IfNotExist round trip.
	err = r.be.Put(ctx, packKey(t, id), data, false)
	size := int64(len(data))
	recyclePack(data)
	if err != nil {
		r.forget(ids...)
		return fmt.Errorf("upload pack %s: %w", id, err)
	}
	sp := sessionPack{id: id, typ: t, size: size, entries: entries}
	r.mu.Lock()
	r.addPackLocked(sp)
	r.session = append(r.session, sp)
	for _, e := range entries {
		delete(r.pending, e.ID)
	}
	checkpoint := len(r.session) >= checkpointPacks
	r.mu.Unlock()
	if checkpoint {
		return r.writeSegment(ctx)
	}
	return nil
}

func (r *Repository) addPackLocked(sp sessionPack) {
	for _, e := range sp.entries {
		// Locations built from a pack this process just wrote are valid by
		// construction; Add fails only on a full index (2^32 entries).
		_ = addLocation(r.idx, r.damaged, e.ID, index.Location{Pack: sp.id, PackType: pack.BlobType(sp.typ), PackSize: uint32(sp.size),
			Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec})
	}
}

// Flush uploads every open pack and writes one index segment listing the
// blobs saved since the last Flush. Blobs are part of the repository (and
// may be referenced by a snapshot) only once Flush has returned nil.
func (r *Repository) Flush(ctx context.Context) error {
	for _, t := range []BlobType{BlobData, BlobMeta} {
		if w := r.packers.takeOpen(t); w != nil && w.Len() > 0 {
			if err := r.uploadPack(ctx, t, w); err != nil {
				return err
			}
		}
	}
	return r.writeSegment(ctx)
}

// checkpointPacks is how many uploaded packs may wait for an index
// segment: a crash re-uploads at most that many packs' blobs on resume.
const checkpointPacks = 4

// writeSegment writes one index segment for the uploaded packs no segment
// lists yet. Segments are content-addressed and may overlap harmlessly.
func (r *Repository) writeSegment(ctx context.Context) error {
	r.segMu.Lock()
	defer r.segMu.Unlock()
	r.mu.Lock()
	session := r.session
	r.mu.Unlock()
	if len(session) == 0 {
		return nil
	}
	seg := &index.Segment{}
	for ord, sp := range session {
		seg.Packs = append(seg.Packs, index.PackInfo{ID: sp.id, Type: pack.BlobType(sp.typ), Size: uint32(sp.size)})
		for _, e := range sp.entries {
			seg.Entries = append(seg.Entries, index.SegmentEntry{ID: e.ID, PackOrd: uint32(ord), Offset: e.Offset,
				StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec})
		}
	}
	data, err := index.EncodeSegment(r.idxCi, seg)
	if err != nil {
		return fmt.Errorf("encode index segment: %w", err)
	}
	key := indexPrefix + ObjectID(sha256.Sum256(data)).String()
	if err := r.be.Put(ctx, key, data, false); err != nil {
		return fmt.Errorf("write index segment: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loadedSegments[key] = true
	r.session = r.session[len(session):]
	return nil
}

// ReloadIndex loads index segments written since the last load (by other
// nodes or processes).
func (r *Repository) ReloadIndex(ctx context.Context) error {
	var listed []string
	err := r.be.List(ctx, indexPrefix, func(oi backend.ObjectInfo) error {
		listed = append(listed, oi.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list index: %w", err)
	}
	damaged, err := r.listDamagedKeys(ctx)
	if err != nil {
		return err
	}
	return r.loadNewSegments(ctx, listed, damaged)
}

// loadNewSegments reads the segments of listed that this handle has not
// loaded and adds their locations. The caller lists index/ and damaged/
// (once: a listing costs a request per thousand keys, and every backup
// adds a segment until a garbage collection merges them).
func (r *Repository) loadNewSegments(ctx context.Context, listed []string, damaged damageSet) error {
	var keys []string
	r.mu.Lock()
	for _, k := range listed {
		if !r.loadedSegments[k] {
			keys = append(keys, k)
		}
	}
	r.mu.Unlock()
	type loaded struct {
		key string
		seg *index.Segment
		err error
	}
	results := make([]loaded, len(keys))
	err := pool.Each(ctx, 8, pool.Indices(len(keys)), func(ctx context.Context, i int) error {
		key := keys[i]
		data, err := r.be.Get(ctx, key)
		if err != nil {
			results[i] = loaded{key: key, err: err}
			return nil
		}
		seg, err := index.DecodeSegment(r.idxCi, data)
		results[i] = loaded{key: key, seg: seg, err: err}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load index: %w", err) // unreached segments have no result
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range damaged {
		r.damaged[c] = true
	}
	for _, l := range results {
		if l.err != nil {
			if errors.Is(l.err, backend.ErrNotFound) {
				continue // superseded and deleted while we listed
			}
			return fmt.Errorf("index segment %s: %w", l.key, l.err)
		}
		for _, e := range l.seg.Entries {
			p := l.seg.Packs[e.PackOrd]
			if err := addLocation(r.idx, r.damaged, e.ID, index.Location{Pack: p.ID, PackType: p.Type, PackSize: p.Size,
				Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec}); err != nil {
				return fmt.Errorf("index segment %s: %w: %v", l.key, ErrCorrupt, err)
			}
		}
		r.loadedSegments[l.key] = true
	}
	return nil
}

// LoadBlob returns the verified plaintext of blob id. A copy that does not
// open, or whose pack is gone, is recorded as damaged; if the index then
// locates another copy (a backup stored the content again), that one is
// read instead.
func (r *Repository) LoadBlob(ctx context.Context, id ObjectID) ([]byte, error) {
	r.mu.Lock()
	loc, ok := r.idx.Lookup(id)
	r.mu.Unlock()
	if !ok {
		// Another node may have written it since we loaded the index.
		if err := r.ReloadIndex(ctx); err != nil {
			return nil, err
		}
		r.mu.Lock()
		loc, ok = r.idx.Lookup(id)
		r.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("blob %s: %w (no index entry)", id, ErrNotFound)
		}
	}
	data, used, damage, err := r.loadAt(ctx, id, loc)
	if errors.Is(err, ErrCorrupt) && damage != "" {
		// Read once more from the store (the cached range is gone): bytes
		// damaged on the way are not damage of the copy.
		if data, used, damage, err = r.loadAt(ctx, id, used); damage == "" {
			return data, err
		}
	}
	if damage == "" {
		return data, err
	}
	r.recordDamage(ctx, id, used, damage)
	if !recordsDamage(ctx) || r.SyncIndex(ctx) != nil {
		return nil, err
	}
	r.mu.Lock()
	other, ok := r.idx.Lookup(id)
	r.mu.Unlock()
	if !ok || copyAt(other) == copyAt(used) {
		return nil, err
	}
	if data, _, _, err2 := r.loadAt(ctx, id, other); err2 == nil {
		return data, nil
	}
	return nil, err
}

// loadAt reads and opens blob id at loc. damage is set when the failure
// is damage of that copy (it does not open, or its pack is gone), not a
// transient error; used is the location read (a resync after a garbage
// collection may move it).
func (r *Repository) loadAt(ctx context.Context, id ObjectID, loc index.Location) (data []byte, used index.Location, damage string, err error) {
	sealed, owned, err := r.readBlobBytes(ctx, loc)
	if errors.Is(err, ErrNotFound) {
		// A garbage collection may have repacked the blob since this
		// handle loaded the index: resync once and look again.
		if serr := r.SyncIndex(ctx); serr == nil {
			r.mu.Lock()
			newLoc, ok := r.idx.Lookup(id)
			r.mu.Unlock()
			if ok && newLoc.Pack != loc.Pack {
				loc = newLoc
				sealed, owned, err = r.readBlobBytes(ctx, loc)
			}
		}
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			damage = "pack missing on read"
		}
		return nil, loc, damage, fmt.Errorf("blob %s in pack %s: %w", id, ObjectID(loc.Pack), err)
	}
	if owned { // read for this blob alone: decrypted where it lies
		data, err = pack.OpenBlobInPlace(r.data, loc.Entry(id), sealed)
	} else {
		data, err = pack.OpenBlob(r.data, loc.Entry(id), sealed)
	}
	if err != nil {
		// Drop the cached range: a retry reads the pack again.
		r.cache.drop(loc.Pack)
		return nil, loc, "corrupt on read: " + err.Error(), fmt.Errorf("blob %s in pack %s: %w: %v", id, ObjectID(loc.Pack), ErrCorrupt, err)
	}
	return data, loc, "", nil
}

// recordDamage records the copy at loc of blob id as damaged, best
// effort: a repository that cannot take the record still reports the read
// error.
func (r *Repository) recordDamage(ctx context.Context, id ObjectID, loc index.Location, reason string) {
	if !recordsDamage(ctx) || ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	known := r.damaged.at(loc)
	r.mu.Unlock()
	if !known {
		_ = r.putDamagedAll(ctx, []DamagedBlob{damageRecord(id, loc, reason)})
	}
}

// readWindow is how much of a pack one ranged read fetches: neighbouring
// blobs (small files packed in path order) then come from the cache.
const readWindow = 1 << 20

// rangeCacheBytes bounds the cached windows.
const rangeCacheBytes = 32 << 20

// readBlobBytes returns the stored bytes of the blob at loc; owned says
// they were read for it alone (not shared with the range cache), so the
// caller may reuse their memory.
func (r *Repository) readBlobBytes(ctx context.Context, loc index.Location) (sealed []byte, owned bool, err error) {
	off, n := int64(loc.Offset), int64(loc.StoredLen)
	if b, ok := r.cache.get(loc.Pack, off, n); ok {
		return b, false, nil
	}
	end := off + max(n, readWindow)
	if size := int64(loc.PackSize); size > 0 && end > size {
		end = max(size, off+n)
	}
	data, err := r.be.GetRange(ctx, packKey(BlobType(loc.PackType), loc.Pack), off, end-off)
	if err != nil {
		if errors.Is(err, backend.ErrNotFound) {
			return nil, false, fmt.Errorf("pack missing: %w", ErrNotFound)
		}
		return nil, false, err
	}
	if int64(len(data)) < n {
		return nil, false, fmt.Errorf("pack shorter than its index says (%d < %d bytes at %d): %w", len(data), n, off, ErrCorrupt)
	}
	if n < readWindow {
		// Only windows around small blobs are worth keeping: their
		// neighbours come next. A large blob is read exactly and used once.
		r.cache.put(loc.Pack, off, data)
		return data[:n], false, nil
	}
	return data[:n], true, nil
}

// rangeCache keeps recently read pack ranges, bounded in bytes (LRU).
type rangeCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	lru   *list.List // of *cachedRange, front = newest
	packs map[ObjectID][]*list.Element
}

type cachedRange struct {
	pack ObjectID
	off  int64
	data []byte
}

func newRangeCache(max int64) *rangeCache {
	return &rangeCache{max: max, lru: list.New(), packs: map[ObjectID][]*list.Element{}}
}

func (c *rangeCache) get(pack ObjectID, off, n int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.packs[pack] {
		cr := el.Value.(*cachedRange)
		if off >= cr.off && off+n <= cr.off+int64(len(cr.data)) {
			c.lru.MoveToFront(el)
			return cr.data[off-cr.off : off-cr.off+n], true
		}
	}
	return nil, false
}

func (c *rangeCache) put(pack ObjectID, off int64, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.lru.PushFront(&cachedRange{pack: pack, off: off, data: data})
	c.packs[pack] = append(c.packs[pack], el)
	c.size += int64(len(data))
	for c.size > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *rangeCache) removeLocked(el *list.Element) {
	cr := c.lru.Remove(el).(*cachedRange)
	c.size -= int64(len(cr.data))
	els := c.packs[cr.pack]
	for i, e := range els {
		if e == el {
			els = append(els[:i], els[i+1:]...)
			break
		}
	}
	if len(els) == 0 {
		delete(c.packs, cr.pack)
	} else {
		c.packs[cr.pack] = els
	}
}

func (c *rangeCache) drop(pack ObjectID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range append([]*list.Element(nil), c.packs[pack]...) {
		c.removeLocked(el)
	}
}
