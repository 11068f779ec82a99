package worker

import (
	"context"
	"fmt"

	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// Chunks lists the distinct chunks of the operation's snapshot: the
// coordinator's dedup step gathers them from every node.
func (w *LocalWorker) Chunks(ctx context.Context, ref wire.StepRef) (wire.ChunksResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.ChunksResult{}, err
	}
	rec, err := w.loadRecord(ref.OpID)
	if err != nil {
		return wire.ChunksResult{}, wire.Permanent(fmt.Errorf("no snapshot of operation %s on node %s: %w", ref.OpID, w.nodeID, err))
	}
	seen := map[storage.ObjectID]bool{}
	res := wire.ChunksResult{Chunks: []wire.ChunkRef{}}
	for _, e := range rec.Entries {
		for i, id := range e.Chunks {
			if seen[id] {
				continue
			}
			seen[id] = true
			size := min(int64(storage.ChunkSize), e.Size-int64(i)*storage.ChunkSize)
			res.Chunks = append(res.Chunks, wire.ChunkRef{ID: id, Size: size})
		}
	}
	return res, nil
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
