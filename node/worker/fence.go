package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/wallclock"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// Fence remembers, durably, the highest coordinator epoch this node has
// accepted and rejects calls with a lower one.
type Fence struct {
	mu       sync.Mutex
	path     string
	accepted uint64
	// journal records what the fence let through and what it refused, so
	// tests (and operators) can check that no deposed coordinator made
	// this node act.
	journal FenceJournal
}

// FenceJournal is a node's record of coordinator calls since it started.
type FenceJournal struct {
	Admitted     []AdmittedCall `json:"admitted"`
	RefusedStale int64          `json:"refused_stale"`
}

// AdmittedCall is one call the fence let through. Step is -1 for an
// epoch announcement.
type AdmittedCall struct {
	OpID  string    `json:"op_id"`
	Step  int       `json:"step"`
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
}

// maxJournal bounds the journal (oldest entries go first).
const maxJournal = 10000

// Journal returns a copy of the journal.
func (f *Fence) Journal() FenceJournal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FenceJournal{Admitted: append([]AdmittedCall{}, f.journal.Admitted...), RefusedStale: f.journal.RefusedStale}
}

func (f *Fence) admittedLocked(ref wire.StepRef) {
	if len(f.journal.Admitted) >= maxJournal {
		f.journal.Admitted = f.journal.Admitted[1:]
	}
	f.journal.Admitted = append(f.journal.Admitted, AdmittedCall{OpID: ref.OpID, Step: ref.Step, Epoch: ref.Epoch, At: wallclock.Now().UTC()})
}

type fenceFile struct {
	Epoch uint64 `json:"epoch"`
}

// OpenFence loads the fence state from dir/fence.json.
func OpenFence(dir string) (*Fence, error) {
	f := &Fence{path: filepath.Join(dir, "fence.json")}
	b, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("fence: %w", err)
	}
	var ff fenceFile
	if err := json.Unmarshal(b, &ff); err != nil {
		return nil, fmt.Errorf("fence %s: %w", f.path, err)
	}
	f.accepted = ff.Epoch
	return f, nil
}

// Admit accepts ref if its epoch is at least the highest seen, persisting a
// new maximum before returning so a restart cannot forget it.
func (f *Fence) Admit(ref wire.StepRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(ref); err != nil {
		return err
	}
	if ref.Epoch == f.accepted {
		f.admittedLocked(ref)
		return nil
	}
	b, _ := json.Marshal(fenceFile{Epoch: ref.Epoch})
	if err := fsutil.WriteFileAtomic(f.path, b); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	f.accepted = ref.Epoch
	f.admittedLocked(ref)
	return nil
}

// Check reports whether ref's epoch would be admitted, without raising
// the accepted epoch: for questions that have no side effect.
func (f *Fence) Check(ref wire.StepRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(ref)
}

func (f *Fence) checkLocked(ref wire.StepRef) error {
	if ref.Epoch < f.accepted && !wire.Injected("skip-epoch-check") {
		f.journal.RefusedStale++
		return fmt.Errorf("%w: operation %s step %d carries epoch %d, node accepted %d",
			wire.ErrStaleEpoch, ref.OpID, ref.Step, ref.Epoch, f.accepted)
	}
	return nil
}

// Accepted returns the highest epoch admitted.
func (f *Fence) Accepted() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}
