package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
)

// ---------------------------------------------------------------------------
// The GC plan (gc/plan): the objects an interrupted garbage collection
// still has to delete. While it exists, every index load (SyncIndex, GC,
// Verify) ignores the segments and packs it names, so no writer
// deduplicates against a blob that is about to go.

const (
	gcPlanKey    = "gc/plan"
	gcPlanMagic  = "CFGP"
	gcPlanHeader = header.Size
	gcPlanAAD    = "crayfish/v1/gc-plan"
)

type gcPlan struct {
	Created time.Time `json:"created"` // local clock, for people
	// Delete lists object keys in deletion order: index segments first,
	// then packs.
	Delete []string `json:"delete"`
}

func (r *Repository) planHeader() []byte { return header.New(gcPlanMagic, r.cfg.Encrypted()) }

func planAAD(h []byte) []byte { return header.AAD(h, gcPlanAAD) }

func (r *Repository) encodePlan(p *gcPlan) ([]byte, error) {
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	h := r.planHeader()
	return r.idxCi.Seal(h, plain, planAAD(h)), nil
}

// readPlan returns the pending plan, or nil if there is none. A plan that
// does not authenticate or decode is an error: nothing may be deduplicated
// or deleted while it is unknown what it condemns.
func (r *Repository) readPlan(ctx context.Context) (*gcPlan, error) {
	b, err := r.be.Get(ctx, gcPlanKey)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", gcPlanKey, err)
	}
	if len(b) < gcPlanHeader || !bytes.Equal(b[:gcPlanHeader], r.planHeader()) {
		return nil, fmt.Errorf("%s: bad header: %w", gcPlanKey, ErrCorrupt)
	}
	h := b[:gcPlanHeader]
	plain, err := r.idxCi.Open(nil, b[gcPlanHeader:], planAAD(h))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", gcPlanKey, ErrCorrupt, err)
	}
	p := new(gcPlan)
	if err := json.Unmarshal(plain, p); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", gcPlanKey, ErrCorrupt, err)
	}
	for _, k := range p.Delete {
		if !strings.HasPrefix(k, indexPrefix) && !strings.HasPrefix(k, dataPrefix) && !strings.HasPrefix(k, metaPrefix) {
			return nil, fmt.Errorf("%s: names %q, outside index/, data/ and meta/: %w", gcPlanKey, k, ErrCorrupt)
		}
	}
	return p, nil
}

// doomed returns the plan's keys and the ids of the packs among them.
func (p *gcPlan) doomed() (keys map[string]bool, packs map[ObjectID]bool) {
	keys, packs = map[string]bool{}, map[ObjectID]bool{}
	if p == nil {
		return keys, packs
	}
	for _, k := range p.Delete {
		keys[k] = true
		if _, id, ok := parsePackKey(k); ok {
			packs[id] = true
		}
	}
	return keys, packs
}

// parsePackKey parses data/<hh>/<id> and meta/<hh>/<id>.
func parsePackKey(key string) (BlobType, ObjectID, bool) {
	var t BlobType
	rest, ok := strings.CutPrefix(key, dataPrefix)
	if !ok {
		if rest, ok = strings.CutPrefix(key, metaPrefix); !ok {
			return 0, ObjectID{}, false
		}
		t = BlobMeta
	}
	hh, h, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, ObjectID{}, false
	}
	id, err := ParseObjectID(h)
	if err != nil || h[:2] != hh {
		return 0, ObjectID{}, false
	}
	return t, id, true
}

// runPlan deletes the plan's objects (index segments first, then packs;
// a missing object is fine), then the damage records of the deleted
// packs, then the plan itself.
func (r *Repository) runPlan(ctx context.Context, p *gcPlan, progress func(string, int, int)) error {
	var segs, rest []string
	for _, k := range p.Delete {
		if strings.HasPrefix(k, indexPrefix) {
			segs = append(segs, k)
		} else {
			rest = append(rest, k)
		}
	}
	done := 0
	for _, phase := range [][]string{segs, rest} {
		if err := r.deleteAll(ctx, phase, func() {
			done++
			progress("delete", done, len(p.Delete))
		}); err != nil {
			return err
		}
	}
	if _, packs := p.doomed(); len(packs) > 0 {
		if _, err := r.deleteDamaged(ctx, packs); err != nil {
			return err
		}
	}
	if err := r.be.Delete(ctx, gcPlanKey); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("gc: remove %s: %w", gcPlanKey, err)
	}
	return nil
}

// deleteAll deletes keys with bounded concurrency; it stops at the first
// failure (a missing key is not one). tick runs once per deleted key, under
// a lock.
func (r *Repository) deleteAll(ctx context.Context, keys []string, tick func()) error {
	var mu sync.Mutex
	return pool.Each(ctx, 8, slices.Values(keys), func(ctx context.Context, k string) error {
		if err := r.be.Delete(ctx, k); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return fmt.Errorf("gc: delete %s: %w", k, err)
		}
		mu.Lock()
		defer mu.Unlock()
		tick()
		return nil
	})
}
