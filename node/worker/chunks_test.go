package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// bigFiles adds three files over the size a shared snapshot saves as it
// reads (sharedSaveMax), so their chunks wait for the upload step.
func bigFiles(t *testing.T, n *filesNode) []storage.ObjectID {
	t.Helper()
	var ids []storage.ObjectID
	for i, name := range []string{"big/a", "big/b", "big/c"} {
		content := strings.Repeat(string(rune('a'+i)), sharedSaveMax+1000)
		write(t, filepath.Join(n.root, name), content)
		ids = append(ids, storage.HashBytes([]byte(content)))
	}
	return ids
}

// TestChunksPartitionsAndKeptSkip: the node counts its distinct chunks,
// its partitions list each exactly once in id order, it keeps each
// partition's assignment, and its upload skips exactly the kept chunks
// when they match the recorded reference — and uploads everything it
// holds when they do not.
func TestChunksPartitionsAndKeptSkip(t *testing.T) {
	for _, match := range []bool{true, false} {
		n := newFilesNode(t)
		big := bigFiles(t, n)
		ctx := context.Background()
		ref := wire.StepRef{OpID: "b", Epoch: 1, Step: 1}
		if _, err := n.w.Snapshot(ctx, ref, wire.SnapshotOptions{Shared: true}, nil); err != nil {
			t.Fatal(err)
		}
		count, err := n.w.Chunks(ctx, ref, wire.ChunksQuery{})
		if err != nil || count.Count != 7 || len(count.Chunks) != 0 {
			t.Fatalf("count %+v %v", count, err)
		}
		const parts = 3
		seen := map[storage.ObjectID]int{}
		digest := wire.NewSkipDigest()
		for p := range parts {
			res, err := n.w.Chunks(ctx, ref, wire.ChunksQuery{Partitions: parts, Partition: p})
			if err != nil || res.Partitions != parts || res.Partition != p {
				t.Fatalf("partition %d: %+v %v", p, res, err)
			}
			a := wire.ChunkAssignment{Partitions: parts, Partition: p, Chunks: len(res.Chunks)}
			for i, c := range res.Chunks {
				seen[c.ID]++
				if wire.ChunkPartition(c.ID, parts) != p || i > 0 && bytes.Compare(res.Chunks[i-1].ID[:], c.ID[:]) >= 0 {
					t.Fatalf("partition %d lists %s at %d", p, c.ID, i)
				}
				if c.ID == big[0] || c.ID == big[2] { // another node uploads these
					a.Skip = wire.SetBit(a.Skip, i)
					digest.Add(c.ID)
				}
			}
			wrong := a
			wrong.Chunks++
			if err := n.w.AssignChunks(ctx, ref, wrong); !errors.Is(err, wire.ErrBadRequest) {
				t.Fatalf("an assignment of another list: %v", err)
			}
			if err := n.w.AssignChunks(ctx, ref, a); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 7 {
			t.Fatalf("partitions listed %d chunks, want 7", len(seen))
		}
		d := digest.Ref(parts)
		if d.Skip != 2 {
			t.Fatalf("ref %+v", d)
		}
		if !match {
			d.Digest = strings.Repeat("0", 64)
		}
		if _, err := n.w.UploadDeduped(ctx, ref, d, nil); err != nil {
			t.Fatal(err)
		}
		for i, id := range big {
			want := i == 1 || !match
			if got := n.repo.HasBlob(id); got != want {
				t.Errorf("match %v: big file %d stored %v, want %v", match, i, got, want)
			}
		}
	}
}

// TestJobsAnswerChunkCallsAtOnce: chunks and assign calls go through the
// job table without being kept, so each partition gets its own answer.
func TestJobsAnswerChunkCallsAtOnce(t *testing.T) {
	n := newFilesNode(t)
	bigFiles(t, n)
	ctx := context.Background()
	ref := wire.StepRef{OpID: "b", Epoch: 1, Step: 4}
	if _, err := n.w.Snapshot(ctx, ref, wire.SnapshotOptions{Shared: true}, nil); err != nil {
		t.Fatal(err)
	}
	jobs := NewJobs(ctx, n.w, n.w.fence, "", slog.New(slog.DiscardHandler))
	w := wire.Caller(jobs.Do)
	total := 0
	for p := range 2 {
		res, err := w.Chunks(ctx, ref, wire.ChunksQuery{Partitions: 2, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		total += len(res.Chunks)
		if err := w.AssignChunks(ctx, ref, wire.ChunkAssignment{Partitions: 2, Partition: p, Chunks: len(res.Chunks)}); err != nil {
			t.Fatal(err)
		}
	}
	if total != 7 {
		t.Fatalf("%d chunks over the partitions, want 7", total)
	}
	if err := w.AssignChunks(ctx, ref, wire.ChunkAssignment{Partitions: 2, Partition: 0, Chunks: 99}); !wire.IsPermanent(err) {
		t.Fatalf("a refused assignment: %v", err)
	}
	if _, err := w.Chunks(ctx, wire.StepRef{OpID: "other", Epoch: 1, Step: 4}, wire.ChunksQuery{}); !wire.IsPermanent(err) {
		t.Fatalf("chunks of no snapshot: %v", err)
	}
}
