package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
)

func loadFinished(t *testing.T, extra string) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	yaml := "node_id: n1\ndata_dir: " + dir + "/data\nroot: " + dir + "/root\n" + extra
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(files.Driver{})
	if err := LoadConfigFile(p, &c); err != nil {
		return c, err
	}
	return c, c.Finish()
}

func TestConfigSchedulesAndNotify(t *testing.T) {
	c, err := loadFinished(t, `notify_urls: [https://hooks.example/c]
schedules:
  - name: nightly
    cron: "0 2 * * *"
    time_zone: Europe/Berlin
    jitter: 10m
  - name: prune
    cron: "@daily"
    kind: cleanup
    options: {policy: {keep_last: 14}}
    missed: run_once
    max_wait: 2h
`)
	if err != nil {
		t.Fatal(err)
	}
	specs := c.scheduleSpecs()
	if len(specs) != 2 || len(c.NotifyURLs) != 1 {
		t.Fatalf("specs %+v, notify %v", specs, c.NotifyURLs)
	}
	n, p := specs[0], specs[1]
	if n.Kind != fsm.KindBackup || n.Missed != fsm.MissedSkip || time.Duration(n.Jitter) != 10*time.Minute || n.Source != "config" || n.TimeZone != "Europe/Berlin" {
		t.Errorf("nightly: %+v", n)
	}
	if p.Kind != fsm.KindCleanup || p.Missed != fsm.MissedRunOnce || time.Duration(p.MaxWait) != 2*time.Hour || string(p.Options) != `{"policy":{"keep_last":14}}` {
		t.Errorf("prune: %+v options %s", p, p.Options)
	}
}

func TestConfigSchedulesRefused(t *testing.T) {
	for name, extra := range map[string]string{
		"bad cron":      "schedules: [{name: a, cron: '61 * * * *'}]",
		"bad zone":      "schedules: [{name: a, cron: '@daily', time_zone: Mars/Base}]",
		"bad kind":      "schedules: [{name: a, cron: '@daily', kind: restore}]",
		"bad option":    "schedules: [{name: a, cron: '@daily', kind: verify, options: {read_everything: true}}]",
		"twice":         "schedules: [{name: a, cron: '@daily'}, {name: a, cron: '@hourly'}]",
		"bad name":      "schedules: [{name: 'Nightly Backup', cron: '@daily'}]",
		"bad notify":    "notify_urls: [ftp://x]",
		"unknown field": "schedules: [{name: a, cron: '@daily', crn: x}]",
	} {
		if _, err := loadFinished(t, extra); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "config") {
			t.Errorf("%s: error does not say where: %v", name, err)
		}
	}
}
