// Package plugintest runs a plugin's restore planner against data-driven
// cases, in the style of etcd-raft's testdata: each testdata/<dir>/
// <case>.json holds a plugin.RestoreRequest, and <case>.golden the plan
// (or the refusal) printed as text. `go test -args -update` rewrites the
// golden files; review their diff like code.
//
// It is a test helper: it imports the plugin seam only, and only tests
// import it.
package plugintest

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

var update = flag.Bool("update", false, "rewrite the golden files of plan tests")

// RunPlans plans every case in dir with d and compares the printed plan
// with its golden file.
func RunPlans(t *testing.T, d plugin.Driver, dir string) {
	t.Helper()
	cases, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no plan cases in %s (%v)", dir, err)
	}
	for _, c := range cases {
		name := strings.TrimSuffix(filepath.Base(c), ".json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(c)
			if err != nil {
				t.Fatal(err)
			}
			var req plugin.RestoreRequest
			if err := json.Unmarshal(b, &req); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			got := Format(d.PlanRestore(req))
			golden := strings.TrimSuffix(c, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -args -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("plan of %s:\n--- got\n%s--- want\n%s", c, got, want)
			}
		})
	}
}

// Format prints a plan, or the planner's refusal, one action a line.
func Format(p plugin.Plan, err error) string {
	var b strings.Builder
	if err != nil {
		// A refusal must carry its mark: the API answers by it.
		kind := "UNMARKED ERROR"
		if errors.Is(err, plugin.ErrBadRequest) || errors.Is(err, plugin.ErrInvalidMeta) {
			kind = "refused"
		}
		fmt.Fprintf(&b, "%s: %v\n", kind, err)
		return b.String()
	}
	for i, ph := range p.Phases {
		fmt.Fprintf(&b, "phase %d\n", i+1)
		for _, a := range ph.Actions {
			fmt.Fprintf(&b, "  %s:", a.Node)
			if len(a.Input) > 0 {
				fmt.Fprintf(&b, " %s", a.Input)
			}
			if a.Backup != "" {
				fmt.Fprintf(&b, " backup=%s", a.Backup)
			}
			if a.LogArchive != "" {
				fmt.Fprintf(&b, " log_archive=%s", a.LogArchive)
			}
			if a.Source != "" {
				fmt.Fprintf(&b, " source=%s", a.Source)
			}
			if a.Target != "" {
				fmt.Fprintf(&b, " target=%s", a.Target)
			}
			if a.Always {
				b.WriteString(" always")
			}
			b.WriteString("\n")
		}
	}
	if p.Staged {
		b.WriteString("staged\n")
	}
	return b.String()
}
