package m3db

import (
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin/plugintest"
)

// TestPlans runs the planner on testdata/plans/*.json against the golden
// plans (go test -args -update rewrites them).
func TestPlans(t *testing.T) {
	plugintest.RunPlans(t, Driver{}, "testdata/plans")
}
