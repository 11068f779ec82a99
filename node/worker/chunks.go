package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// The node's side of the partitioned dedup step (wire/dedup.go): count
// the snapshot's distinct chunks, list one partition of them, keep the
// coordinator's decision for a partition in the snapshot directory
// (dedup/<partitions>-<partition>: the skipped ids, 32 bytes each), and
// upload with the kept skip list once it matches what the log recorded.

// Chunks counts the distinct chunks of the operation's snapshot, or (with
// q.Partitions > 0) lists those of partition q.Partition in ascending id
// order.
func (w *LocalWorker) Chunks(ctx context.Context, ref wire.StepRef, q wire.ChunksQuery) (wire.ChunksResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.ChunksResult{}, err
	}
	if q.Partitions < 0 || q.Partitions > wire.MaxPartitions || q.Partitions > 0 && (q.Partition < 0 || q.Partition >= q.Partitions) {
		return wire.ChunksResult{}, wire.Permanent(fmt.Errorf("%w: partition %d of %d", wire.ErrBadRequest, q.Partition, q.Partitions))
	}
	rec, err := w.loadRecord(ref.OpID)
	if err != nil {
		return wire.ChunksResult{}, wire.Permanent(fmt.Errorf("no snapshot of operation %s on node %s: %w", ref.OpID, w.nodeID, err))
	}
	res := wire.ChunksResult{Partitions: q.Partitions, Partition: q.Partition, Chunks: []wire.ChunkRef{}}
	if q.Partitions == 0 {
		seen := map[storage.ObjectID]struct{}{}
		eachChunk(rec.Entries, func(c wire.ChunkRef) {
			if _, ok := seen[c.ID]; !ok {
				seen[c.ID] = struct{}{}
				res.Count++
				res.Bytes += c.Size
			}
		})
		return res, nil
	}
	res.Chunks = partitionChunks(rec.Entries, q.Partitions, q.Partition)
	return res, ctx.Err()
}

// eachChunk calls fn for every chunk of entries (repeats included).
func eachChunk(entries []storage.FileEntry, fn func(wire.ChunkRef)) {
	for _, e := range entries {
		for i, id := range e.Chunks {
			fn(wire.ChunkRef{ID: id, Size: min(int64(storage.ChunkSize), e.Size-int64(i)*storage.ChunkSize)})
		}
	}
}

// partitionChunks lists the distinct chunks of entries in partition p of
// n, in ascending id order: the list a ChunkAssignment's bitmap indexes.
func partitionChunks(entries []storage.FileEntry, n, p int) []wire.ChunkRef {
	seen := map[storage.ObjectID]bool{}
	out := []wire.ChunkRef{}
	eachChunk(entries, func(c wire.ChunkRef) {
		if !seen[c.ID] && wire.ChunkPartition(c.ID, n) == p {
			seen[c.ID] = true
			out = append(out, c)
		}
	})
	slices.SortFunc(out, func(a, b wire.ChunkRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

func (w *LocalWorker) dedupPath(opID string, partitions, p int) string {
	return filepath.Join(w.snapshotDir(opID), "dedup", strconv.Itoa(partitions)+"-"+strconv.Itoa(p))
}

// AssignChunks keeps the coordinator's decision for one partition: the ids
// of the partition's chunks another node uploads. A repeat replaces it.
func (w *LocalWorker) AssignChunks(ctx context.Context, ref wire.StepRef, a wire.ChunkAssignment) error {
	if err := w.fence.Admit(ref); err != nil {
		return err
	}
	if a.Partitions <= 0 || a.Partitions > wire.MaxPartitions || a.Partition < 0 || a.Partition >= a.Partitions {
		return wire.Permanent(fmt.Errorf("%w: partition %d of %d", wire.ErrBadRequest, a.Partition, a.Partitions))
	}
	defer w.ops.lock(ref.OpID)()
	rec, err := w.loadRecord(ref.OpID)
	if err != nil {
		return wire.Permanent(fmt.Errorf("no snapshot of operation %s on node %s: %w", ref.OpID, w.nodeID, err))
	}
	chunks := partitionChunks(rec.Entries, a.Partitions, a.Partition)
	if len(chunks) != a.Chunks || len(a.Skip) > (len(chunks)+7)/8 {
		return wire.Permanent(fmt.Errorf("%w: the assignment of partition %d of %d covers %d chunks, node %s has %d there",
			wire.ErrBadRequest, a.Partition, a.Partitions, a.Chunks, w.nodeID, len(chunks)))
	}
	var ids []byte
	for i, c := range chunks {
		if wire.Bit(a.Skip, i) {
			ids = append(ids, c.ID[:]...)
		}
	}
	path := w.dedupPath(ref.OpID, a.Partitions, a.Partition)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, ids); err != nil {
		return fmt.Errorf("keep dedup assignment: %w", err)
	}
	return ctx.Err()
}

// errSkipMismatch: the kept skip list is not the one the log recorded.
var errSkipMismatch = errors.New("the kept skip list differs from the recorded one")

// keptSkip reads the skip list kept for d and checks it against d.
func (w *LocalWorker) keptSkip(opID string, d wire.DedupRef) ([]storage.ObjectID, error) {
	if d.Partitions <= 0 || d.Partitions > wire.MaxPartitions {
		return nil, fmt.Errorf("%w: %d partitions", errSkipMismatch, d.Partitions)
	}
	digest := wire.NewSkipDigest()
	var skip []storage.ObjectID
	for p := range d.Partitions {
		b, err := os.ReadFile(w.dedupPath(opID, d.Partitions, p))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: partition %d of %d was never assigned here", errSkipMismatch, p, d.Partitions)
		}
		if err != nil {
			return nil, err
		}
		if len(b)%len(storage.ObjectID{}) != 0 {
			return nil, fmt.Errorf("%w: partition %d is %d bytes", errSkipMismatch, p, len(b))
		}
		for ; len(b) > 0; b = b[len(storage.ObjectID{}):] {
			id := storage.ObjectID(b)
			digest.Add(id)
			skip = append(skip, id)
		}
	}
	if got := digest.Ref(d.Partitions); got != d {
		return nil, fmt.Errorf("%w: %d chunks (digest %.12s), the log says %d (%.12s)", errSkipMismatch, got.Skip, got.Digest, d.Skip, d.Digest)
	}
	return skip, nil
}

// UploadDeduped uploads what the repository lacks except the chunks the
// kept skip list leaves to other nodes. A kept list that does not match
// d (an assignment lost, or left by an attempt the log did not record) is
// not trusted: the node then uploads every missing chunk it holds, which
// stores duplicates but never loses one.
func (w *LocalWorker) UploadDeduped(ctx context.Context, ref wire.StepRef, d wire.DedupRef, progress wire.ProgressFunc) (wire.UploadResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.UploadResult{}, err
	}
	var skip []storage.ObjectID
	if d.Skip > 0 {
		var err error
		if skip, err = w.keptSkip(ref.OpID, d); err != nil {
			w.log.Warn("dedup skip list not usable; uploading every missing chunk this node holds", "op", ref.OpID, "err", err)
			skip = nil
		}
	}
	return w.Upload(ctx, ref, skip, progress)
}

// skipStore makes Upload treat chunks another node uploads as present.
type skipStore struct {
	tree.BlobStore
	skip map[storage.ObjectID]bool
}

func (s skipStore) HasBlob(id storage.ObjectID) bool { return s.skip[id] || s.BlobStore.HasBlob(id) }

func skipSet(ids []storage.ObjectID) map[storage.ObjectID]bool {
	m := make(map[storage.ObjectID]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
