package worker

import (
	"errors"
	"testing"

	"github.com/crayfish-backup/crayfish/node/wire"
)

func TestFenceRejectsStaleEpochAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFence(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []uint64{3, 3, 7} {
		if err := f.Admit(wire.StepRef{OpID: "op", Epoch: e}); err != nil {
			t.Fatalf("epoch %d: %v", e, err)
		}
	}
	if err := f.Admit(wire.StepRef{OpID: "op", Epoch: 5}); !errors.Is(err, wire.ErrStaleEpoch) || !wire.IsPermanent(err) {
		t.Fatalf("stale epoch admitted or not permanent: %v", err)
	}
	again, err := OpenFence(dir) // a restarted node remembers
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Admit(wire.StepRef{OpID: "op", Epoch: 6}); !errors.Is(err, wire.ErrStaleEpoch) {
		t.Fatalf("after reopen, epoch 6 < 7 admitted: %v", err)
	}
	if err := again.Admit(wire.StepRef{OpID: "op", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
}
