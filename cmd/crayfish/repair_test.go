package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
)

// The repair subcommands send their kind and flags to POST /v1/repairs.
func TestRepairRequests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		body string
	}{
		{[]string{"repair", "index", "--id", "r1"}, `{"id":"r1","kind":"index"}`},
		{[]string{"repair", "packs", "--id", "r2", "--dry-run"}, `{"id":"r2","kind":"packs","dry_run":true}`},
		{[]string{"repair", "snapshots", "--id", "r3", "--forget"}, `{"id":"r3","kind":"snapshots","forget":true}`},
	} {
		f := &fakeAgent{states: backupStates(fsm.OpSucceeded)}
		srv := httptest.NewServer(f)
		code, _, errOut := runCLI(t, nil, append([]string{"--url", srv.URL}, tc.args...)...)
		srv.Close()
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		if f.requests[0] != "POST /v1/repairs" || f.bodies[0] != tc.body {
			t.Errorf("%v: sent %s %s, want %s", tc.args, f.requests[0], f.bodies[0], tc.body)
		}
	}
	// --forget exists only where it means something.
	if code, _, errOut := runCLI(t, nil, "repair", "packs", "--forget"); code == 0 || !strings.Contains(errOut, "forget") {
		t.Errorf("repair packs --forget: exit %d: %s", code, errOut)
	}
}
