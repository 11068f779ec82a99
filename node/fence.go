package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// ErrStaleEpoch: a node-side call carried a fencing epoch older than one
// the node already accepted, so it comes from a deposed coordinator.
var ErrStaleEpoch = errors.New("stale fencing epoch: a newer coordinator has taken over")

// StepRef identifies the step on whose behalf a node acts. Every side
// effect a coordinator asks of a node carries one.
type StepRef struct {
	OpID  string `json:"op_id"`
	Epoch uint64 `json:"epoch"`
	Step  int    `json:"step"`
}

// Fence remembers, durably, the highest coordinator epoch this node has
// accepted and rejects calls with a lower one.
type Fence struct {
	mu       sync.Mutex
	path     string
	accepted uint64
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
func (f *Fence) Admit(ref StepRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ref.Epoch < f.accepted {
		return fmt.Errorf("%w: operation %s step %d carries epoch %d, node accepted %d",
			ErrStaleEpoch, ref.OpID, ref.Step, ref.Epoch, f.accepted)
	}
	if ref.Epoch == f.accepted {
		return nil
	}
	b, _ := json.Marshal(fenceFile{Epoch: ref.Epoch})
	if err := writeFileAtomic(f.path, b); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	f.accepted = ref.Epoch
	return nil
}

// Check reports whether ref's epoch would be admitted, without raising
// the accepted epoch: for questions that have no side effect.
func (f *Fence) Check(ref StepRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ref.Epoch < f.accepted {
		return fmt.Errorf("%w: operation %s step %d carries epoch %d, node accepted %d",
			ErrStaleEpoch, ref.OpID, ref.Step, ref.Epoch, f.accepted)
	}
	return nil
}

// Accepted returns the highest epoch admitted.
func (f *Fence) Accepted() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// writeFileAtomic replaces path with b: temp file, fsync, rename, fsync dir.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
