package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestWriteOperationListsDamage(t *testing.T) {
	chunk := storage.HashBytes([]byte("c"))
	res := wire.RestoreResult{Files: 10, DamagedTotal: 3, Damaged: []wire.DamagedFile{
		{Path: "a/one.bin", ChunksTotal: 1, Chunks: []wire.DamagedChunk{{ID: chunk, Pack: "pack-one", Problem: wire.DamageCorrupt}}},
		{Path: "b/two.bin", ChunksTotal: 1, Chunks: []wire.DamagedChunk{{Index: 2, ID: chunk, Problem: wire.DamageMissing}}},
	}}
	b, _ := json.Marshal(res)
	op := &api.Operation{ID: "restore-1", Kind: fsm.KindRestore, State: fsm.OpFailed, Steps: []fsm.Step{
		{Name: wire.StepRestore, Node: "n1", State: fsm.StepFailed, Error: "damaged", Result: b},
		{Name: wire.StepRestore, Node: "n2", State: fsm.StepDone, Result: json.RawMessage(`{"files":5}`)},
	}}
	var out bytes.Buffer
	if err := writeOperation(&out, op, time.Now()); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"Damaged files", "a/one.bin", "pack-one", "corrupt", "b/two.bin", "missing", chunk.String(), "1 more damaged files on n1"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if _, damage, _ := strings.Cut(s, "Damaged files"); strings.Contains(damage, "n2") {
		t.Errorf("a node without damage is listed:\n%s", s)
	}
}
