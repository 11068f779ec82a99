package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// AdoptOrphanPacks indexes packs modified at or after since that no index
// segment lists: the packs an upload wrote before it died and before its
// next index checkpoint. A resumed upload adopts them instead of storing
// their blobs again. Each pack's footer is authenticated before its blobs
// are trusted; a pack that fails is left for garbage collection. The
// adopted packs reach an index segment at the next Flush.
//
// Call it under a shared repository lock: garbage collection (exclusive)
// is what deletes orphan packs, so none vanishes while it is adopted.
func (r *Repository) AdoptOrphanPacks(ctx context.Context, since time.Time) (adopted int, err error) {
	r.mu.Lock()
	known := r.idx.Packs()
	r.mu.Unlock()
	type candidate struct {
		key  string
		typ  BlobType
		id   ObjectID
		size int64
	}
	var orphans []candidate
	for _, prefix := range []string{dataPrefix, metaPrefix} {
		err := r.be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			if oi.ModTime.Before(since) {
				return nil
			}
			t, id, ok := parsePackKey(oi.Key)
			if !ok {
				return nil
			}
			if _, indexed := known[pack.ID(id)]; !indexed {
				orphans = append(orphans, candidate{key: oi.Key, typ: t, id: id, size: oi.Size})
			}
			return nil
		})
		if err != nil {
			return adopted, fmt.Errorf("list packs: %w", err)
		}
	}
	for _, o := range orphans {
		entries, err := r.readPackFooter(ctx, o.key, o.size)
		if err != nil {
			continue // not ours to judge: GC or verify will
		}
		sp := sessionPack{id: o.id, typ: o.typ, size: o.size, entries: entries}
		r.mu.Lock()
		r.addPackLocked(sp)
		r.session = append(r.session, sp)
		r.mu.Unlock()
		adopted++
	}
	return adopted, nil
}

// readPackFooter reads and authenticates the footer of the pack at key.
func (r *Repository) readPackFooter(ctx context.Context, key string, size int64) ([]pack.Entry, error) {
	n := min(size, pack.TailReadSize)
	tail, err := r.be.GetRange(ctx, key, size-n, n)
	if err != nil {
		return nil, err
	}
	entries, err := pack.ReadFooter(r.data, nil, tail, size)
	if errors.Is(err, pack.ErrShortTail) { // a footer of many small blobs
		footerLen, _, _, perr := pack.ParseTrailer(tail)
		if perr != nil {
			return nil, perr
		}
		n = min(size, pack.FooterReadSize(footerLen))
		if tail, err = r.be.GetRange(ctx, key, size-n, n); err != nil {
			return nil, err
		}
		entries, err = pack.ReadFooter(r.data, nil, tail, size)
	}
	return entries, err
}
