package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// hugeWorker returns results that would not fit in a log entry: a
// snapshot with 100,000 long warnings, an upload whose file list names
// 30,000 blobs (2 MB of ids), a restore with 5,000 damaged files of long
// paths.
type hugeWorker struct {
	fakeWorker
	hugeUpload bool
}

func (w *hugeWorker) Snapshot(_ context.Context, ref wire.StepRef, _ wire.SnapshotOptions, _ wire.ProgressFunc) (wire.SnapshotResult, error) {
	w.record("snapshot", ref)
	res := wire.SnapshotResult{Files: 1}
	for i := range 100_000 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("file %d changed while read: %s", i, strings.Repeat("x", 3000)))
	}
	return res, nil
}

func (w *hugeWorker) Upload(ctx context.Context, ref wire.StepRef, skip []storage.ObjectID, p wire.ProgressFunc) (wire.UploadResult, error) {
	if !w.hugeUpload {
		return w.fakeWorker.Upload(ctx, ref, skip, p)
	}
	w.record("upload", ref)
	res := wire.UploadResult{Entries: 1}
	for i := range 30_000 {
		res.Tree = append(res.Tree, chunkID(i))
	}
	return res, nil
}

func (w *hugeWorker) Restore(_ context.Context, ref wire.StepRef, _ wire.RestoreRequest, _ wire.ProgressFunc) (wire.RestoreResult, error) {
	w.record("restore", ref)
	res := wire.RestoreResult{Files: 5000, DamagedTotal: 5000, DamagedBlobsTotal: 5000}
	for i := range 5000 {
		f := wire.DamagedFile{Path: fmt.Sprintf("%s/%d", strings.Repeat("d", 500), i), ChunksTotal: 16}
		for j := range 16 {
			f.Chunks = append(f.Chunks, wire.DamagedChunk{Index: j, ID: chunkID(i*16 + j), Pack: chunkID(i).String(), Problem: wire.DamageMissing})
		}
		res.Damaged = append(res.Damaged, f)
		res.DamagedBlobs = append(res.DamagedBlobs, chunkID(i))
	}
	return res, wire.MarkDamaged(errors.New("5000 files damaged"))
}

// TestNoEntryOverTheLimit: results that would exceed the 1 MiB entry limit
// are cut (warnings with "… and N more", damaged files with their totals)
// or, when they cannot be cut (an upload's file list), fail their step for
// good with an error marked fsm.ErrEntryTooLarge; no entry of the log
// exceeds the limit either way.
func TestNoEntryOverTheLimit(t *testing.T) {
	t.Run("cut", func(t *testing.T) {
		w := &hugeWorker{}
		ops, store, _ := startEngine(t, w)
		startWithRetry(t, ops, "b1")
		op := waitDone(t, store, "b1")
		if op.State != fsm.OpSucceeded {
			t.Fatalf("backup %s: %s", op.State, op.Error)
		}
		var snap wire.SnapshotResult
		if err := json.Unmarshal(op.Steps[1].Result, &snap); err != nil || op.Steps[1].Name != wire.StepSnapshot {
			t.Fatalf("step %s: %v", op.Steps[1].Name, err)
		}
		if len(snap.Warnings) != maxWarnings+1 || snap.Warnings[maxWarnings] != "… and 99900 more" || len(snap.Warnings[0]) > maxWarningBytes {
			t.Fatalf("%d warnings, last %q", len(snap.Warnings), snap.Warnings[len(snap.Warnings)-1])
		}

		if _, _, err := ops.StartRestore(context.Background(), "r1", op.BackupID, "", api.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		r := waitDone(t, store, "r1")
		if r.State != fsm.OpFailed {
			t.Fatalf("restore %s", r.State)
		}
		var rr wire.RestoreResult
		for _, st := range r.Steps {
			if st.Name == wire.StepRestore {
				if err := json.Unmarshal(st.Result, &rr); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rr.DamagedTotal != 5000 || len(rr.Damaged) == 0 || len(rr.Damaged) >= 5000 || rr.DamagedBlobsTotal != 5000 {
			t.Fatalf("damaged %d of %d, blobs %d of %d", len(rr.Damaged), rr.DamagedTotal, len(rr.DamagedBlobs), rr.DamagedBlobsTotal)
		}
		if n := store.largestEntry(); n > fsm.MaxEntryBytes {
			t.Fatalf("an entry of %d bytes", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		w := &hugeWorker{hugeUpload: true}
		ops, store, _ := startEngine(t, w)
		startWithRetry(t, ops, "b1")
		op := waitDone(t, store, "b1")
		if op.State != fsm.OpFailed || !strings.Contains(op.Error, fsm.ErrEntryTooLarge.Error()) {
			t.Fatalf("backup %s: %s", op.State, op.Error)
		}
		if w.count("upload") != 1 {
			t.Errorf("%d uploads: a result too large is not retried", w.count("upload"))
		}
		if n := store.largestEntry(); n > fsm.MaxEntryBytes {
			t.Fatalf("an entry of %d bytes", n)
		}
	})
	t.Run("edge", func(t *testing.T) {
		// The proposal edge itself refuses, marked, whatever proposes.
		_, store, _ := startEngine(t, &fakeWorker{})
		big := json.RawMessage(`"` + strings.Repeat("x", fsm.MaxEntryBytes) + `"`)
		_, err := store.Apply(context.Background(), fsm.Command{Type: fsm.CmdStepDone, OpID: "x", Result: big, Time: time.Now()})
		if !errors.Is(err, fsm.ErrEntryTooLarge) {
			t.Fatalf("err %v", err)
		}
	})
}
