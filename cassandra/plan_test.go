package cassandra

import (
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin/plugintest"
)

// TestPlans: the restore plans of testdata/plans, printed and compared
// with their golden files (go test ./cassandra -run TestPlans -args -update).
func TestPlans(t *testing.T) {
	plugintest.RunPlans(t, Driver{}, "testdata/plans")
}
