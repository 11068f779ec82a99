package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

// TestPrometheusAlertOnFailedBackup: a real Prometheus (Debian's
// prometheus package) scrapes a real three-node cluster with the rules of
// deploy/prometheus; a backup that fails (one node's root is gone) fires
// CrayfishBackupFailed, and nothing fired before it.
func TestPrometheusAlertOnFailedBackup(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (Debian's prometheus package; .ci/run installs it): %v", err)
	}
	c := startCluster(t, 3, "prom", "", "")
	dir := t.TempDir()
	var targets []string
	for _, a := range c.agents {
		targets = append(targets, fmt.Sprintf("%q", a.http))
	}
	rules, err := filepath.Abs(filepath.Join(repoRoot(t), "deploy", "prometheus", "crayfish-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: crayfish
    static_configs:
      - targets: [%s]
`, rules, strings.Join(targets, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddrOn(t, "127.0.0.1")
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait(); logf.Close() })
	prom := func(path string, v any) error {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(500 * time.Millisecond) {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
				t.Fatalf("%s: not within 60 s\n%s", what, tail(string(b), 3000))
			}
		}
	}
	// Every node scraped, with the failed-backups counter at 0.
	waitFor("every agent scraped", func() bool {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		q := url.QueryEscape(`crayfish_operations_finished_total{kind="backup",state="failed"} == 0`)
		return prom("/api/v1/query?query="+q, &r) == nil && len(r.Data.Result) == 3
	})
	firing := func(name string) bool {
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if prom("/api/v1/alerts", &r) != nil {
			return false
		}
		for _, a := range r.Data.Alerts {
			if a.Labels["alertname"] == name && a.State == "firing" {
				return true
			}
		}
		return false
	}
	time.Sleep(2 * time.Second) // a few evaluations on the healthy cluster
	for _, name := range []string{"CrayfishBackupFailed", "CrayfishNoLeader", "CrayfishNodeDown", "CrayfishRepositoryDamaged"} {
		if firing(name) {
			t.Fatalf("%s fires on a healthy cluster", name)
		}
	}

	if err := os.RemoveAll(c.agents[1].root); err != nil {
		t.Fatal(err)
	}
	res := c.agents[0].cli("backup", "--wait", "--output", "json")
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil || op.State != fsm.OpFailed {
		t.Fatalf("the backup with a missing root: exit %d, %s (%v)", res.code, res.stdout, err)
	}
	started := time.Now()
	waitFor("CrayfishBackupFailed firing", func() bool { return firing("CrayfishBackupFailed") })
	t.Logf("CrayfishBackupFailed fired %s after the backup failed", time.Since(started).Round(100*time.Millisecond))
}
