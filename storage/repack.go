package storage

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// Repacking: the live blobs of wasteful packs are written into new packs
// (gc and repair packs).

// repacker writes live blobs into new packs, bypassing deduplication (the
// blobs are "present" in the packs being replaced).
type repacker struct {
	r       *Repository
	ws      [2]*pack.Writer // by pack type
	nidx    *index.Index    // the new packs' blobs
	keys    []string        // objects written
	written int64           // bytes written
	warning string
}

type plainBlob struct {
	id   ObjectID
	typ  pack.BlobType
	data []byte
}

// repackOne copies the live blobs of pack pid into new packs. It returns
// false (and sets warning) if the pack cannot be read or a blob does not
// verify: the pack is then kept as it is.
func (rp *repacker) repackOne(ctx context.Context, pid ObjectID, ps *packStat, ids []ObjectID, gidx *index.Index) (bool, error) {
	key := packKey(ps.typ, pid)
	data, err := rp.r.be.Get(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("gc: %w", ctx.Err())
		}
		rp.warning = fmt.Sprintf("pack %s not repacked: %v", key, err)
		return false, nil
	}
	blobs := make([]plainBlob, 0, len(ids))
	for _, id := range ids {
		loc, _ := gidx.Lookup(id)
		end := int64(loc.Offset) + int64(loc.StoredLen)
		if end > int64(len(data)) {
			rp.warning = fmt.Sprintf("pack %s not repacked: blob %s lies beyond its %d bytes", key, id, len(data))
			return false, nil
		}
		pt, err := pack.OpenBlob(rp.r.data, loc.Entry(id), data[loc.Offset:end])
		if err != nil {
			rp.warning = fmt.Sprintf("pack %s not repacked: blob %s: %v", key, id, err)
			return false, nil
		}
		blobs = append(blobs, plainBlob{id: id, typ: loc.Type, data: pt})
	}
	for _, b := range blobs {
		if err := rp.add(ctx, ps.typ, b); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (rp *repacker) add(ctx context.Context, t BlobType, b plainBlob) error {
	w := rp.ws[t]
	if w != nil && w.Len() > 0 && int64(w.Size())+int64(len(b.data))+pack.RecordOverhead > pack.MaxSize {
		if err := rp.finish(ctx, t); err != nil {
			return err
		}
		w = nil
	}
	if w == nil {
		w = rp.r.newPackWriter(t)
		rp.ws[t] = w
	}
	if _, err := w.Add(b.id, b.typ, b.data); err != nil {
		return fmt.Errorf("gc: repack blob %s: %w", b.id, err)
	}
	if w.Size() >= pack.TargetSize {
		return rp.finish(ctx, t)
	}
	return nil
}

func (rp *repacker) finish(ctx context.Context, t BlobType) error {
	w := rp.ws[t]
	rp.ws[t] = nil
	if w == nil || w.Len() == 0 {
		return nil
	}
	data, entries, err := w.Finish()
	if err != nil {
		return fmt.Errorf("gc: finish pack: %w", err)
	}
	id := ObjectID(sha256.Sum256(data))
	key := packKey(t, id)
	if err := rp.r.be.Put(ctx, key, data, false); err != nil {
		return fmt.Errorf("gc: upload repacked pack %s: %w", id, err)
	}
	if _, err := rp.nidx.AddPack(index.PackInfo{ID: id, Type: pack.BlobType(t), Size: uint32(len(data))}, entries); err != nil {
		return fmt.Errorf("gc: index repacked pack %s: %w", id, err)
	}
	rp.keys = append(rp.keys, key)
	rp.written += int64(len(data))
	return nil
}

func (rp *repacker) finishAll(ctx context.Context) error {
	for _, t := range []BlobType{BlobData, BlobMeta} {
		if err := rp.finish(ctx, t); err != nil {
			return err
		}
	}
	return nil
}
