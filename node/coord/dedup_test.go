package coord

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// fakeChunks answers a chunks query over chunks as a node does: the
// distinct count, or one partition's chunks in ascending id order.
func fakeChunks(chunks []wire.ChunkRef, q wire.ChunksQuery) wire.ChunksResult {
	res := wire.ChunksResult{Partitions: q.Partitions, Partition: q.Partition, Chunks: []wire.ChunkRef{}}
	seen := map[storage.ObjectID]bool{}
	for _, c := range chunks {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		res.Count++
		res.Bytes += c.Size
		if q.Partitions > 0 && wire.ChunkPartition(c.ID, q.Partitions) == q.Partition {
			res.Chunks = append(res.Chunks, c)
		}
	}
	slices.SortFunc(res.Chunks, func(a, b wire.ChunkRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return res
}

// fakeKept keeps the assignments a node was given, by partition, as the
// node's data dir does.
type fakeKept map[[2]int][]storage.ObjectID

func (k *fakeKept) assign(chunks []wire.ChunkRef, a wire.ChunkAssignment) error {
	list := fakeChunks(chunks, wire.ChunksQuery{Partitions: a.Partitions, Partition: a.Partition}).Chunks
	if len(list) != a.Chunks {
		return wire.Permanent(fmt.Errorf("assignment covers %d chunks, node has %d", a.Chunks, len(list)))
	}
	var ids []storage.ObjectID
	for i, c := range list {
		if wire.Bit(a.Skip, i) {
			ids = append(ids, c.ID)
		}
	}
	if *k == nil {
		*k = fakeKept{}
	}
	(*k)[[2]int{a.Partitions, a.Partition}] = ids
	return nil
}

func (k fakeKept) skip(d wire.DedupRef) ([]storage.ObjectID, error) {
	digest := wire.NewSkipDigest()
	var out []storage.ObjectID
	for p := range d.Partitions {
		ids, ok := k[[2]int{d.Partitions, p}]
		if !ok {
			return nil, fmt.Errorf("partition %d of %d never assigned", p, d.Partitions)
		}
		for _, id := range ids {
			digest.Add(id)
			out = append(out, id)
		}
	}
	if got := digest.Ref(d.Partitions); got != d {
		return nil, fmt.Errorf("kept %+v, recorded %+v", got, d)
	}
	return out, nil
}

// partitionWorker is a fakeWorker that also records, per partition, how
// many chunk references it listed.
type partitionWorker struct {
	fakeWorker
	pmu    sync.Mutex
	listed map[[2]int][]storage.ObjectID
}

func (w *partitionWorker) Chunks(ctx context.Context, ref wire.StepRef, q wire.ChunksQuery) (wire.ChunksResult, error) {
	res, err := w.fakeWorker.Chunks(ctx, ref, q)
	if q.Partitions > 0 {
		w.pmu.Lock()
		if w.listed == nil {
			w.listed = map[[2]int][]storage.ObjectID{}
		}
		for _, c := range res.Chunks {
			w.listed[[2]int{q.Partitions, q.Partition}] = append(w.listed[[2]int{q.Partitions, q.Partition}], c.ID)
		}
		w.pmu.Unlock()
	}
	return res, err
}

// chunkID is a deterministic id of test chunk i.
func chunkID(i int) storage.ObjectID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return storage.HashBytes(b[:])
}

// dedupCluster runs one backup on fake nodes and returns the finished
// operation, its dedup result and the log.
func dedupCluster(t *testing.T, workers map[string]*partitionWorker, present []storage.ObjectID, perPartition int) (*fsm.Operation, DedupResult, *memLog) {
	t.Helper()
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range workers {
			if !yield(n) {
				return
			}
		}
	})
	ops, store, repo := startEngineOn(t, newMemLog(), []string{"n1"}, func(n string) (wire.Worker, error) {
		if w, ok := workers[n]; ok {
			return w, nil
		}
		return nil, errors.New("no such node")
	}, func(c *Config) { c.DedupPartitionChunks = perPartition })
	for _, id := range present {
		repo.present[id] = true
	}
	done := runOp(t, ops, store, backupOp("b1", names...))
	if done.State != fsm.OpSucceeded {
		t.Fatalf("op %s: %s", done.State, done.Error)
	}
	var res DedupResult
	for _, st := range done.Steps {
		if st.Name == wire.StepDedup {
			if err := json.Unmarshal(st.Result, &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	return done, res, store
}

// checkAssignment: every missing chunk is uploaded by exactly one node
// that holds it, no node skips a chunk it does not hold, and the
// assigned bytes add up.
func checkAssignment(t *testing.T, workers map[string]*partitionWorker, present map[storage.ObjectID]bool, res DedupResult) {
	t.Helper()
	uploaders := map[storage.ObjectID]int{}
	size := map[storage.ObjectID]int64{}
	for n, w := range workers {
		holds := map[storage.ObjectID]bool{}
		for _, c := range w.chunks {
			holds[c.ID] = true
			size[c.ID] = c.Size
		}
		skips := map[storage.ObjectID]bool{}
		for _, id := range w.skipped {
			if !holds[id] {
				t.Fatalf("node %s told to skip chunk %s it does not hold", n, id)
			}
			skips[id] = true
		}
		for id := range holds {
			if !present[id] && !skips[id] {
				uploaders[id]++
			}
		}
	}
	var missingBytes int64
	for id, n := range uploaders {
		if n != 1 {
			t.Fatalf("chunk %s uploaded by %d nodes", id, n)
		}
		missingBytes += size[id]
	}
	var assigned int64
	for _, b := range res.AssignedBytes {
		assigned += b
	}
	if int64(len(uploaders)) != res.Missing || missingBytes != res.MissingBytes || assigned != res.MissingBytes {
		t.Fatalf("%d chunks of %d bytes uploaded, result %+v (assigned %d)", len(uploaders), missingBytes, res, assigned)
	}
}

// TestDedupPartitioned: with a small partition bound the dedup step
// decides several partitions one after the other; together they cover
// every chunk exactly once, no partition gathers more references than
// the bound, every missing chunk is uploaded by exactly one holder, the
// assignment is balanced by bytes, and the result is the same on a
// repeat.
func TestDedupPartitioned(t *testing.T) {
	const nodes, perNode, perPartition = 4, 3000, 2000
	present := map[storage.ObjectID]bool{}
	var presentIDs []storage.ObjectID
	mk := func() map[string]*partitionWorker {
		ws := map[string]*partitionWorker{}
		for n := range nodes {
			w := &partitionWorker{}
			for i := range perNode {
				// Half of each node's chunks are shared by all nodes, a
				// tenth of those already in the repository.
				id := 1_000_000*(n+1) + i
				if i%2 == 0 {
					id = i
				}
				w.chunks = append(w.chunks, wire.ChunkRef{ID: chunkID(id), Size: int64(1 + id%4096)})
			}
			// A chunk listed twice (two files with the same content).
			w.chunks = append(w.chunks, w.chunks[0])
			ws[fmt.Sprintf("n%d", n+1)] = w
		}
		return ws
	}
	for i := 0; i < perNode; i += 20 {
		present[chunkID(i)] = true
		presentIDs = append(presentIDs, chunkID(i))
	}
	workers := mk()
	_, res, store := dedupCluster(t, workers, presentIDs, perPartition)

	wantParts := dedupPartitions(nodes*perNode, perPartition)
	if res.Partitions != wantParts || wantParts < 4 {
		t.Fatalf("%d partitions, want %d (more than a few)", res.Partitions, wantParts)
	}
	// The partitions cover every chunk of every node exactly once, and
	// none gathered more references than the bound.
	perPart := map[int]int{}
	for n, w := range workers {
		seen := map[storage.ObjectID]int{}
		for key, ids := range w.listed {
			if key[0] != res.Partitions {
				t.Fatalf("node %s listed partition %v of another count", n, key)
			}
			perPart[key[1]] += len(ids)
			for _, id := range ids {
				seen[id]++
			}
		}
		for _, c := range w.chunks {
			if seen[c.ID] != 1 {
				t.Fatalf("node %s: chunk %s listed in %d partitions", n, c.ID, seen[c.ID])
			}
		}
		if len(seen) != perNode {
			t.Fatalf("node %s: %d chunks listed, has %d", n, len(seen), perNode)
		}
		if w.count("assign") != res.Partitions {
			t.Fatalf("node %s got %d assignments for %d partitions", n, w.count("assign"), res.Partitions)
		}
	}
	if len(perPart) != res.Partitions {
		t.Fatalf("%d partitions listed of %d", len(perPart), res.Partitions)
	}
	for p, refs := range perPart {
		if refs > perPartition {
			t.Fatalf("partition %d gathered %d references, bound %d", p, refs, perPartition)
		}
	}
	checkAssignment(t, workers, present, res)
	// Each node holds 1,500 chunks of its own and the 1,500 shared ones,
	// 150 of them present: the 1,350 missing shared ones spread evenly.
	if res.Shared != 1350 || len(res.Nodes) != nodes {
		t.Fatalf("result %+v", res)
	}
	var lo, hi int64 = 1 << 62, 0
	for _, b := range res.AssignedBytes {
		lo, hi = min(lo, b), max(hi, b)
	}
	if hi-lo > 4096 {
		t.Errorf("assigned bytes %v: spread %d, over one chunk", res.AssignedBytes, hi-lo)
	}
	if store.largestEntry() > 64<<10 {
		t.Errorf("largest log entry %d bytes", store.largestEntry())
	}
	// Deterministic: the same inputs give the same assignment.
	again := mk()
	_, res2, _ := dedupCluster(t, again, presentIDs, perPartition)
	if b1, _ := json.Marshal(res); !bytes.Equal(b1, must(json.Marshal(res2))) {
		t.Fatalf("a repeat decided otherwise:\n%+v\n%+v", res, res2)
	}
	for n := range workers {
		if !slices.Equal(workers[n].skipped, again[n].skipped) {
			t.Fatalf("node %s skips otherwise on a repeat", n)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestDedupSkipListsStayOutOfTheLog: three nodes share 120,000 missing
// chunks, more than any one entry could hold as skip lists (the older
// design recorded up to 50,000 ids, 3.4 MB, per node). No entry exceeds
// 1 MiB, and each shared chunk is still uploaded exactly once.
func TestDedupSkipListsStayOutOfTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("120,000 chunks")
	}
	const shared = 120_000
	workers := map[string]*partitionWorker{}
	for _, n := range []string{"a", "b", "c"} {
		w := &partitionWorker{}
		for i := range shared {
			w.chunks = append(w.chunks, wire.ChunkRef{ID: chunkID(i), Size: storage.ChunkSize})
		}
		workers[n] = w
	}
	_, res, store := dedupCluster(t, workers, nil, 0)
	if res.Partitions != 1 || res.Shared != shared || res.SavedBytes != 2*shared*storage.ChunkSize {
		t.Fatalf("result %+v", res)
	}
	skipped := 0
	for _, w := range workers {
		skipped += len(w.skipped)
	}
	if skipped != 2*shared {
		t.Fatalf("%d chunks skipped, want %d", skipped, 2*shared)
	}
	checkAssignment(t, workers, nil, res)
	if n := store.largestEntry(); n > fsm.MaxEntryBytes || n > 16<<10 {
		t.Fatalf("largest log entry %d bytes", n)
	}
}

// TestDedupOlderAgentFailsClearly: a node that answers a partition query
// with its whole list (an agent before partitioned dedup ignores the
// query) fails the step for good, saying why.
func TestDedupOlderAgentFailsClearly(t *testing.T) {
	old := &olderWorker{}
	old.chunks = []wire.ChunkRef{{ID: chunkID(1), Size: 10}}
	cur := &partitionWorker{}
	cur.chunks = old.chunks
	ops, store, _ := startEngineOn(t, newMemLog(), []string{"n1"}, func(n string) (wire.Worker, error) {
		if n == "a" {
			return wire.Caller(old.run), nil
		}
		return cur, nil
	})
	done := runOp(t, ops, store, backupOp("b1", "a", "b"))
	if done.State != fsm.OpFailed || !strings.Contains(done.Error, "older than partitioned dedup") {
		t.Fatalf("op %s: %s", done.State, done.Error)
	}
}

// olderWorker answers chunks calls as an agent before partitioned dedup:
// the whole list, no partition echoed.
type olderWorker struct{ fakeWorker }

func (w *olderWorker) run(ctx context.Context, req wire.StepRequest, p wire.ProgressFunc, out any) error {
	var res any
	var err error
	switch req.Name {
	case wire.StepChunks:
		res = struct {
			Chunks []wire.ChunkRef `json:"chunks"`
		}{w.chunks}
	case wire.StepSnapshot:
		res, err = w.Snapshot(ctx, req.Ref, wire.SnapshotOptions{}, p)
	case wire.StepUpload:
		res, err = w.Upload(ctx, req.Ref, req.Skip, p)
	case wire.StepRelease:
		res, err = struct{}{}, w.Release(ctx, req.Ref)
	default:
		return wire.Permanent(fmt.Errorf("%w: unknown node step %q", wire.ErrBadRequest, req.Name))
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	return json.Unmarshal(b, out)
}
