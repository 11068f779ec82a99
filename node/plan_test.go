package node

import (
	"sort"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage"
)

func TestBackupIDsSortInStartOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 50 {
		// Same second, later starts; op ids chosen so their hashes do not sort in order.
		ids = append(ids, newBackupID(string(rune('z'-i%26))+"op", t0.Add(time.Duration(i)*1500*time.Microsecond)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("backup ids do not sort in start order: %v", ids)
	}
	for _, id := range ids {
		if !storage.ValidBackupID(id) {
			t.Fatalf("generated invalid backup id %q", id)
		}
	}
	if a, b := newBackupID("x", t0), newBackupID("x", t0.Add(time.Nanosecond)); a != b {
		t.Fatalf("backup id depends on more than (op id, time to the µs): %s %s", a, b)
	}
	if a, b := newBackupID("x", t0), newBackupID("y", t0); a == b {
		t.Fatalf("different operations at the same time got the same backup id %s", a)
	}
}
