package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// TestStatusFullResults: an operation served with a step result cut
// (marked result_paged) says so in text; --full-results follows the
// result's pages and prints it whole.
func TestStatusFullResults(t *testing.T) {
	files := []wire.DamagedFile{{Path: "a"}, {Path: "b"}, {Path: "c"}}
	cut, _ := json.Marshal(wire.RestoreResult{Files: 3, DamagedTotal: 3, Damaged: files[:1]})
	op := api.Operation{ID: "op-9", Kind: fsm.KindRestore, State: fsm.OpFailed, Steps: []fsm.Step{
		{Name: wire.StepRestore, Node: "n1", State: fsm.StepFailed, Result: cut,
			ResultPaged: &fsm.ResultPaged{Bytes: 40000, Lists: map[string]int{"damaged": 3}}}}}
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.URL.RequestURI())
		var v any
		switch r.URL.Path {
		case "/v1/operations/op-9":
			v = op
		case "/v1/operations/op-9/steps/0/result":
			switch r.URL.Query().Get("cursor") {
			case "":
				p, _ := json.Marshal(map[string]any{"files": 3, "damaged_total": 3, "damaged": files[:2]})
				v = api.StepResultPage{OperationID: "op-9", Name: wire.StepRestore, Result: p, NextCursor: "damaged:2"}
			case "damaged:2":
				p, _ := json.Marshal(map[string]any{"damaged": files[2:]})
				v = api.StepResultPage{OperationID: "op-9", Name: wire.StepRestore, Result: p}
			}
		}
		if v == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(v)
	}))
	defer srv.Close()

	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "status", "op-9")
	if code != 0 || !strings.Contains(out, "Large results shown cut") || !strings.Contains(out, "damaged 3") ||
		!strings.Contains(out, "crayfish status op-9 --full-results") {
		t.Fatalf("exit %d (%s):\n%s", code, errOut, out)
	}
	if len(requests) != 1 {
		t.Fatalf("requests %v: pages fetched without --full-results", requests)
	}
	code, out, errOut = runCLI(t, nil, "--url", srv.URL, "-o", "json", "status", "op-9", "--full-results")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got api.Operation
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	var rr wire.RestoreResult
	if err := json.Unmarshal(got.Steps[0].Result, &rr); err != nil || len(rr.Damaged) != 3 || rr.Damaged[2].Path != "c" || rr.Files != 3 || got.Steps[0].ResultPaged != nil {
		t.Fatalf("full result %s (%v)", got.Steps[0].Result, err)
	}
}
