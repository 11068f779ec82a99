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

// DedupResult is the recorded result of the dedup step: which chunks each
// node leaves to another, and what the assignment saves.
type DedupResult struct {
	// Skip lists, per node, the missing chunks it holds but another node
	// uploads. Only chunks held by several nodes appear.
	Skip map[string][]storage.ObjectID `json:"skip"`
	// SkipCapped counts the chunks left to a node although another node
	// uploads them too, because its skip list reached wire.MaxSkipChunks.
	SkipCapped int64 `json:"skip_capped,omitempty"`
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

// dedup gathers every node's chunk list, asks the repository which chunks
// exist, and assigns each missing chunk to exactly one node that holds
// it: a chunk only one node holds goes to that node, a shared one to the
// holder with the fewest bytes assigned so far (largest chunks first), so
// identical files on several nodes are uploaded once and the upload work
// is balanced.
func (e *Engine) dedup(ctx context.Context, ref wire.StepRef, op *fsm.Operation) (DedupResult, error) {
	var nodes []string
	for _, st := range op.Steps {
		if st.Name == wire.StepUpload {
			nodes = append(nodes, st.Node)
		}
	}
	lists := make([]wire.ChunksResult, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxNodeCalls)
	for i, n := range nodes {
		g.Go(func() error {
			w, err := e.workers(n)
			if err == nil {
				lists[i], err = w.Chunks(gctx, ref)
			}
			if err != nil {
				return fmt.Errorf("chunks of node %s: %w", n, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return DedupResult{}, err
	}
	if err := e.repo.SyncIndex(ctx); err != nil {
		return DedupResult{}, err
	}
	type holding struct {
		size    int64
		holders []string
	}
	missing := map[storage.ObjectID]*holding{}
	for i, l := range lists {
		for _, c := range l.Chunks {
			if e.repo.HasBlob(c.ID) {
				continue
			}
			h := missing[c.ID]
			if h == nil {
				h = &holding{size: c.Size}
				missing[c.ID] = h
			}
			if !slices.Contains(h.holders, nodes[i]) {
				h.holders = append(h.holders, nodes[i])
			}
		}
	}
	res := DedupResult{Skip: map[string][]storage.ObjectID{}, AssignedBytes: map[string]int64{}}
	var shared []storage.ObjectID
	for id, h := range missing {
		res.Missing++
		res.MissingBytes += h.size
		if len(h.holders) == 1 {
			res.AssignedBytes[h.holders[0]] += h.size
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
		return shared[a].String() < shared[b].String()
	})
	for _, id := range shared {
		h := missing[id]
		owner := h.holders[0]
		for _, n := range h.holders[1:] {
			if res.AssignedBytes[n] < res.AssignedBytes[owner] || res.AssignedBytes[n] == res.AssignedBytes[owner] && n < owner {
				owner = n
			}
		}
		res.AssignedBytes[owner] += h.size
		for _, n := range h.holders {
			if n == owner {
				continue
			}
			if len(res.Skip[n]) >= wire.MaxSkipChunks {
				// The upload request must stay under the internal body
				// limit: past the cap the node uploads the chunk too.
				res.SkipCapped++
				continue
			}
			res.Skip[n] = append(res.Skip[n], id)
			res.SavedBytes += h.size
		}
		res.Shared++
	}
	e.log.Info("dedup assignment", "op", op.ID, "missing", res.Missing, "missing_bytes", res.MissingBytes,
		"shared", res.Shared, "saved_bytes", res.SavedBytes, "skip_capped", res.SkipCapped)
	return res, nil
}

// dedupSkip returns the chunks node leaves to others, from the recorded
// dedup step (none if the plan has no dedup step).
func dedupSkip(op *fsm.Operation, node string) ([]storage.ObjectID, error) {
	for _, st := range op.Steps {
		if st.Name != wire.StepDedup || st.State != fsm.StepDone {
			continue
		}
		var res DedupResult
		if err := json.Unmarshal(st.Result, &res); err != nil {
			return nil, wire.Permanent(fmt.Errorf("dedup result: %w", err))
		}
		return res.Skip[node], nil
	}
	return nil, nil
}
