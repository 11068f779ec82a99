package node

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/worker"
	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// TestDeployNamesExposedMetrics: every crayfish_ metric the alert rules
// and the dashboard under deploy/ use is one the agent exposes, so they
// never query a series that does not exist.
func TestDeployNamesExposedMetrics(t *testing.T) {
	m := newMetrics()
	m.watchLogShipping(func() worker.LogShipStatus { return worker.LogShipStatus{} })
	m.watchIO(func() worker.IOStats { return worker.IOStats{} })
	m.registry.MustRegister(&repoCounter{repo: &fakeCatalog{}},
		&clusterCollector{plugin: "files", fsm: fsm.NewMachine(), raft: func() Status { return Status{} },
			members: func() []gossip.Member { return nil }, epoch: func() uint64 { return 0 }})
	ch := make(chan *prometheus.Desc, 256)
	go func() { m.registry.Describe(ch); close(ch) }()
	exposed := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		if sub := fqName.FindStringSubmatch(d.String()); sub != nil {
			exposed[sub[1]] = true
			for _, suffix := range []string{"_bucket", "_count", "_sum"} { // histograms
				exposed[sub[1]+suffix] = true
			}
		}
	}
	used := regexp.MustCompile(`crayfish_[a-z_]+[a-z]`)
	files := []string{"../deploy/prometheus/crayfish-rules.yml", "../deploy/grafana/crayfish-dashboard.json"}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range used.FindAllString(string(b), -1) {
			if strings.HasPrefix(name, "crayfish_rules") { // the file's own name
				continue
			}
			checked++
			if !exposed[name] {
				t.Errorf("%s uses %s, which the agent does not expose", filepath.Base(f), name)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d metric references found in %v", checked, files)
	}
	if !slices.Contains(sortedKeys(exposed), "crayfish_backup_last_success_timestamp_seconds") {
		t.Fatal("the collectors were not described")
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
