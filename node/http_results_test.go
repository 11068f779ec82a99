package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/client"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// mergePages follows resultPage from the first page and rebuilds the
// result as a client does.
func mergePages(t *testing.T, raw json.RawMessage, limit int) (map[string]any, int) {
	t.Helper()
	var whole map[string]any
	cursor, pages := "", 0
	for {
		p, err := resultPage(raw, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		var obj map[string]any
		if err := json.Unmarshal(p.Result, &obj); err != nil {
			t.Fatal(err)
		}
		if whole == nil {
			whole = obj
		} else {
			for k, v := range obj {
				items, ok := v.([]any)
				if !ok {
					t.Fatalf("a later page carries field %s", k)
				}
				old, _ := whole[k].([]any)
				whole[k] = append(old, items...)
			}
		}
		n := 0
		for _, v := range obj {
			if items, ok := v.([]any); ok {
				n += len(items)
			}
		}
		if n > limit {
			t.Fatalf("a page of %d items, limit %d", n, limit)
		}
		if p.NextCursor == "" {
			return whole, pages
		}
		cursor = p.NextCursor
	}
}

// TestResultPagesRebuildTheResult: paging any result with any limit and
// appending the pages gives the result back; a served copy is cut to the
// first items of each list and marked.
func TestResultPagesRebuildTheResult(t *testing.T) {
	res := wire.RestoreResult{Target: "/t", Files: 5000, DamagedTotal: 2500, DamagedBlobsTotal: 1000, Plugin: json.RawMessage(`{"list":[1,2,3]}`)}
	for i := range 2500 {
		res.Damaged = append(res.Damaged, wire.DamagedFile{Path: fmt.Sprintf("dir/%05d", i), ChunksTotal: 1,
			Chunks: []wire.DamagedChunk{{Index: 0, Problem: wire.DamageMissing}}})
	}
	for i := range 1000 {
		res.DamagedBlobs = append(res.DamagedBlobs, res.Damaged[i].Chunks[0].ID)
	}
	raw, _ := json.Marshal(res)
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{13, 100, 1000} { // every page parses the whole result: not 1

		got, pages := mergePages(t, raw, limit)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("limit %d: the pages do not rebuild the result", limit)
		}
		if wantPages := (3500 + limit - 1) / limit; pages != wantPages && limit < 1000 {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	for _, bad := range []string{"nope", "damaged", "damaged:-1", "damaged:2501", "target:0"} {
		if _, err := resultPage(raw, bad, 10); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}

	op := &fsm.Operation{ID: "r", Steps: []fsm.Step{{Name: "restore", Result: raw}, {Name: "lock", Result: json.RawMessage(`{}`)}}}
	cutResults(op)
	st := op.Steps[0]
	if st.ResultPaged == nil || st.ResultPaged.Bytes != len(raw) || st.ResultPaged.Lists["damaged"] != 2500 || st.ResultPaged.Lists["damaged_blobs"] != 1000 {
		t.Fatalf("mark %+v", st.ResultPaged)
	}
	var cut wire.RestoreResult
	if err := json.Unmarshal(st.Result, &cut); err != nil || len(cut.Damaged) != api.InlineResultItems || cut.DamagedTotal != 2500 || cut.Files != 5000 || len(st.Result) > api.InlineResultBytes {
		t.Fatalf("cut result: %d damaged of %d, %d bytes (%v)", len(cut.Damaged), cut.DamagedTotal, len(st.Result), err)
	}
	if op.Steps[1].ResultPaged != nil {
		t.Fatal("a small result marked")
	}
}

// TestLargeResultPagedOverAPI: a restore from a repository whose packs
// are all corrupt records 1,000 damaged files; the operation is served with the
// result cut and marked, and the client rebuilds the whole of it from
// its pages.
func TestLargeResultPagedOverAPI(t *testing.T) {
	root := t.TempDir()
	tree := map[string]string{}
	for i := range 1500 {
		tree[fmt.Sprintf("d%02d/file-%04d.txt", i%30, i)] = fmt.Sprintf("content of file %d", i)
	}
	writeTree(t, root, tree)
	a := startAgent(t, agentOpts{root: root})
	a.waitLeader()
	t0 := time.Now()
	b := a.run("/v1/backups", api.StartBackupRequest{})
	t.Logf("backup %s", time.Since(t0))
	data := filepath.Join(strings.TrimPrefix(a.cfg.Repository, "file://"), "data")
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			// Corrupt, not removed: a missing pack is retried a while.
			var fi fs.FileInfo
			if fi, err = d.Info(); err == nil {
				err = os.WriteFile(p, make([]byte, fi.Size()), 0o600)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r := a.waitOp(a.start("/v1/restores", api.StartRestoreRequest{BackupID: b.BackupID, Target: t.TempDir()}).ID)
	t.Logf("restore %s", time.Since(t0))
	if r.State != fsm.OpFailed {
		t.Fatalf("restore from a repository of corrupt packs: %s", r.State)
	}
	step := -1
	for i, st := range r.Steps {
		if st.Name == wire.StepRestore {
			step = i
		}
	}
	st := r.Steps[step]
	if st.ResultPaged == nil || st.ResultPaged.Lists["damaged"] != 1000 || len(st.Result) > api.InlineResultBytes {
		t.Fatalf("restore step served with %d bytes, mark %+v", len(st.Result), st.ResultPaged)
	}
	recorded := a.agent.store.FSM().Operation(r.ID).Steps[step].Result
	var want wire.RestoreResult
	if err := json.Unmarshal(recorded, &want); err != nil || len(want.Damaged) != 1000 || want.DamagedTotal != 1500 {
		t.Fatalf("recorded %d damaged of %d (%v)", len(want.Damaged), want.DamagedTotal, err)
	}

	c := client.New(a.base, nil)
	ctx := context.Background()
	page, err := c.StepResultPage(ctx, r.ID, step, "", 50)
	if err != nil || page.NextCursor == "" || page.Lists["damaged"] != 1000 || page.Name != wire.StepRestore || page.Bytes != len(recorded) {
		t.Fatalf("first page %+v: %v", page, err)
	}
	whole, err := c.StepResult(ctx, r.ID, step, 50)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.RestoreResult
	if err := json.Unmarshal(whole, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt result differs (%v): %d damaged", err, len(got.Damaged))
	}
	op, err := c.Operation(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FullResults(ctx, op); err != nil || op.Steps[step].ResultPaged != nil || len(op.Steps[step].Result) != len(whole) {
		t.Fatalf("full results: %v", err)
	}
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, "/v1/operations/"+r.ID+"/steps/"+fmt.Sprint(step)+"/result?cursor=bogus", nil)
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/v1/operations/"+r.ID+"/steps/99/result", nil)
}
