package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
	"golang.org/x/sync/errgroup"
)

// DedupResult is the recorded result of the dedup step: per node a
// reference to the skip list the node keeps (the chunks it holds but
// another node uploads), and what the assignment saves. Its size grows
// with the number of nodes only, never with the number of chunks.
type DedupResult struct {
	// Partitions is how many partitions of the chunk ids the step decided
	// one after the other (wire.ChunkPartition).
	Partitions int `json:"partitions"`
	// Nodes are, per node with chunks to skip, the reference its upload
	// step checks the kept skip list against.
	Nodes map[string]wire.DedupRef `json:"nodes,omitempty"`
	// Skip is the older form: the skip lists themselves, in the log. A
	// result recorded before partitioned dedup may still have them.
	Skip map[string][]storage.ObjectID `json:"skip,omitempty"`
	// AssignedBytes is, per node, the plaintext bytes of missing chunks it
	// uploads.
	AssignedBytes map[string]int64 `json:"assigned_bytes"`
	Missing       int64            `json:"missing"`       // distinct chunks the repository lacks
	MissingBytes  int64            `json:"missing_bytes"` // their plaintext bytes
	Shared        int64            `json:"shared"`        // missing chunks held by more than one node
	SavedBytes    int64            `json:"saved_bytes"`   // bytes not uploaded twice thanks to the assignment
}

// maxNodeCalls bounds the calls the leader has in flight to nodes at once
// in one cluster step.
const maxNodeCalls = 16

// DefaultDedupPartitionChunks bounds the chunk references (one per node
// holding a chunk) the dedup step gathers for one partition: about 100
// bytes each on the coordinator, so ~100 MB at most, whatever the size of
// the cluster (a million 4 MiB chunks are 4 TiB of distinct content).
const DefaultDedupPartitionChunks = 1_000_000

// dedupPartitions is how many partitions keep one partition's references
// under perPartition, from the sum of the nodes' distinct chunk counts.
// Chunk ids are SHA-256 sums, spread evenly over the partitions' ranges:
// aiming at half the bound leaves room for the spread.
func dedupPartitions(total int64, perPartition int) int {
	if perPartition <= 0 {
		perPartition = DefaultDedupPartitionChunks
	}
	target := max(int64(perPartition)/2, 1)
	p := (total + target - 1) / target
	return int(min(max(p, 1), wire.MaxPartitions))
}

// nodeDedup is the dedup step's running state of one node.
type nodeDedup struct {
	name   string
	w      wire.Worker
	digest *wire.SkipDigest
	count  int64                // distinct chunks
	bytes  int64                // their plaintext bytes
	chunks []wire.ChunkRef      // of the current partition
	assign wire.ChunkAssignment // the node's part of the current partition
}

// dedup assigns each missing chunk to exactly one node that holds it, one
// partition of the chunk ids at a time: it asks every node how many
// distinct chunks it has, chooses the partitions so one partition's
// references stay under the bound, then for each partition gathers every
// node's chunks of it, asks the repository which exist, decides — a chunk
// only one node holds goes to that node, a shared one to the holder with
// the fewest bytes assigned so far (largest chunks first, then by id) — and
// tells each node its part (AssignChunks), which the node keeps for its
// upload step. Only the per-node references go into the result.
func (e *Engine) dedup(ctx context.Context, ref wire.StepRef, op *fsm.Operation, progress wire.ProgressFunc) (DedupResult, error) {
	var nodes []*nodeDedup
	for _, st := range op.Steps {
		if st.Name == wire.StepUpload {
			nodes = append(nodes, &nodeDedup{name: st.Node, digest: wire.NewSkipDigest()})
		}
	}
	// Sorted, so the assignment does not depend on the plan's order.
	slices.SortFunc(nodes, func(a, b *nodeDedup) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	err := forNodes(ctx, nodes, func(ctx context.Context, n *nodeDedup) error {
		w, err := e.workers(n.name)
		if err != nil {
			return err
		}
		n.w = w
		c, err := w.Chunks(ctx, ref, wire.ChunksQuery{})
		if err != nil {
			return fmt.Errorf("chunks: %w", err)
		}
		n.count, n.bytes = max(c.Count, 0), max(c.Bytes, 0)
		return nil
	})
	if err != nil {
		return DedupResult{}, err
	}
	var total, totalBytes int64
	for _, n := range nodes {
		total += n.count
		totalBytes += n.bytes
	}
	if err := e.repo.SyncIndex(ctx); err != nil {
		return DedupResult{}, err
	}
	parts := dedupPartitions(total, e.cfg.DedupPartitionChunks)
	res := DedupResult{Partitions: parts, Nodes: map[string]wire.DedupRef{}, AssignedBytes: map[string]int64{}}
	var done int64 // bytes of the chunk lists decided (the progress)
	for p := range parts {
		n, err := e.dedupPartition(ctx, ref, nodes, parts, p, &res)
		if err != nil {
			return DedupResult{}, err
		}
		if done += n; progress != nil {
			progress(fsm.Progress{BytesDone: done, BytesTotal: totalBytes})
		}
	}
	for _, n := range nodes {
		if d := n.digest.Ref(parts); d.Skip > 0 {
			res.Nodes[n.name] = d
		}
	}
	e.log.Info("dedup assignment", "op", op.ID, "nodes", len(nodes), "chunks", total, "bytes", totalBytes, "partitions", parts,
		"missing", res.Missing, "missing_bytes", res.MissingBytes, "shared", res.Shared, "saved_bytes", res.SavedBytes)
	return res, nil
}

// forNodes runs call for every node, at most maxNodeCalls at once (each
// call touches only its node); an error names its node.
func forNodes(ctx context.Context, nodes []*nodeDedup, call func(context.Context, *nodeDedup) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxNodeCalls)
	for _, n := range nodes {
		g.Go(func() error {
			if err := call(gctx, n); err != nil {
				return fmt.Errorf("node %s: %w", n.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// dedupPartition decides partition p of parts and tells every node its
// part of the decision. It returns the bytes of the nodes' lists.
func (e *Engine) dedupPartition(ctx context.Context, ref wire.StepRef, nodes []*nodeDedup, parts, p int, res *DedupResult) (int64, error) {
	q := wire.ChunksQuery{Partitions: parts, Partition: p}
	err := forNodes(ctx, nodes, func(ctx context.Context, n *nodeDedup) error {
		c, err := n.w.Chunks(ctx, ref, q)
		if err != nil {
			return fmt.Errorf("chunks of partition %d of %d: %w", p, parts, err)
		}
		for i, ch := range c.Chunks {
			if wire.ChunkPartition(ch.ID, parts) != p || i > 0 && string(c.Chunks[i-1].ID[:]) >= string(ch.ID[:]) {
				return wire.Permanent(fmt.Errorf("chunks of partition %d of %d: chunk %s out of the partition or out of order", p, parts, ch.ID))
			}
		}
		n.chunks = c.Chunks
		return nil
	})
	if err != nil {
		return 0, err
	}
	type holding struct {
		size    int64
		holders []int // indexes into nodes
	}
	missing := map[storage.ObjectID]*holding{}
	var listed int64
	for i, n := range nodes {
		for _, c := range n.chunks {
			listed += c.Size
			if e.repo.HasBlob(c.ID) {
				continue
			}
			h := missing[c.ID]
			if h == nil {
				h = &holding{size: c.Size}
				missing[c.ID] = h
			}
			h.holders = append(h.holders, i) // each node lists a chunk once
		}
	}
	var shared []storage.ObjectID
	for id, h := range missing {
		res.Missing++
		res.MissingBytes += h.size
		if len(h.holders) == 1 {
			res.AssignedBytes[nodes[h.holders[0]].name] += h.size
		} else {
			shared = append(shared, id)
		}
	}
	// Deterministic order: largest first, then by id.
	sort.Slice(shared, func(a, b int) bool {
		ha, hb := missing[shared[a]], missing[shared[b]]
		if ha.size != hb.size {
			return ha.size > hb.size
		}
		return string(shared[a][:]) < string(shared[b][:])
	})
	skip := make([]map[storage.ObjectID]bool, len(nodes))
	for _, id := range shared {
		h := missing[id]
		owner := h.holders[0]
		for _, n := range h.holders[1:] {
			bn, bo := res.AssignedBytes[nodes[n].name], res.AssignedBytes[nodes[owner].name]
			if bn < bo || bn == bo && nodes[n].name < nodes[owner].name {
				owner = n
			}
		}
		res.AssignedBytes[nodes[owner].name] += h.size
		for _, n := range h.holders {
			if n == owner {
				continue
			}
			if skip[n] == nil {
				skip[n] = map[storage.ObjectID]bool{}
			}
			skip[n][id] = true
			res.SavedBytes += h.size
		}
		res.Shared++
	}
	clear(missing)
	// Every node gets its part, an empty one too: it replaces whatever an
	// earlier attempt of the step left for this partition.
	for i, n := range nodes {
		n.assign = wire.ChunkAssignment{Partitions: parts, Partition: p, Chunks: len(n.chunks)}
		for j, c := range n.chunks { // ascending ids: the digest's order
			if skip[i][c.ID] {
				n.assign.Skip = wire.SetBit(n.assign.Skip, j)
				n.digest.Add(c.ID)
			}
		}
		n.chunks = nil
	}
	return listed, forNodes(ctx, nodes, func(ctx context.Context, n *nodeDedup) error {
		if err := n.w.AssignChunks(ctx, ref, n.assign); err != nil {
			return fmt.Errorf("assign partition %d of %d: %w", p, parts, err)
		}
		n.assign = wire.ChunkAssignment{}
		return nil
	})
}

// dedupSkip returns what node's upload step leaves to others, from the
// recorded dedup step: a reference to the list the node keeps, or (a
// result of the older form) the list itself. Both are empty without a
// dedup step or when the node skips nothing.
func dedupSkip(op *fsm.Operation, node string) (*wire.DedupRef, []storage.ObjectID, error) {
	for _, st := range op.Steps {
		if st.Name != wire.StepDedup || st.State != fsm.StepDone {
			continue
		}
		var res DedupResult
		if err := json.Unmarshal(st.Result, &res); err != nil {
			return nil, nil, wire.Permanent(fmt.Errorf("dedup result: %w", err))
		}
		if d, ok := res.Nodes[node]; ok {
			return &d, nil, nil
		}
		return nil, res.Skip[node], nil
	}
	return nil, nil, nil
}
