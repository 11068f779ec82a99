package coord

import (
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// TestUnlockOutlastsAStoreOutage: an unlock step is attempted at least
// unlockAttempts times, other steps as configured.
func TestUnlockOutlastsAStoreOutage(t *testing.T) {
	if got := stepAttempts(3, fsm.Step{Name: wire.StepUnlock}); got != unlockAttempts {
		t.Fatalf("unlock attempts %d, want %d", got, unlockAttempts)
	}
	if got := stepAttempts(12, fsm.Step{Name: wire.StepUnlock}); got != 12 {
		t.Fatalf("unlock attempts %d with 12 configured", got)
	}
	if got := stepAttempts(3, fsm.Step{Name: wire.StepUpload}); got != 3 {
		t.Fatalf("upload attempts %d, want 3", got)
	}
}
