package cassandra

import (
	"errors"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

func TestSettingsFinish(t *testing.T) {
	env := plugin.Env{DataDir: "/srv/crayfish"}
	s := Driver{}.NewConfig().(*Settings)
	if err := s.Finish(env); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if s.OverrideFile != "/srv/crayfish/cassandra-override.yaml" {
		t.Errorf("override file defaults to %q", s.OverrideFile)
	}
	c, err := s.Config()
	if err != nil || c.Hosts[0] != "127.0.0.1" || c.DataDirs[0] != "/var/lib/cassandra/data" || c.Nodetool[0] != "nodetool" || c.LogFile != "/var/log/cassandra/system.log" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for name, mutate := range map[string]func(*Settings){
		"no hosts":          func(s *Settings) { s.Hosts = nil },
		"relative data dir": func(s *Settings) { s.DataDirs = []string{"data"} },
		"cert without key":  func(s *Settings) { s.TLSCertFile = "/etc/c.pem" },
		"no nodetool":       func(s *Settings) { s.Nodetool = " " },
		"missing password":  func(s *Settings) { s.PasswordFile = "/nonexistent/pw" },
	} {
		s := Driver{}.NewConfig().(*Settings)
		mutate(s)
		if err := s.Finish(env); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNodePluginMarksPermanent: a step input the plugin cannot read, and
// an unknown action, fail for good instead of being retried.
func TestNodePluginMarksPermanent(t *testing.T) {
	p, err := Driver{}.Open(Driver{}.NewConfig(), plugin.Env{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stage(plugin.RestoreStep{Input: []byte(`{"action":`)}); !plugin.IsPermanent(err) || !errors.Is(err, ErrBadRestore) {
		t.Errorf("malformed input: %v", err)
	}
	_, err = p.Restore(t.Context(), plugin.RestoreStep{Input: []byte(`{"action":"dance"}`), Source: []byte(`{"tables":[]}`)}, t.TempDir())
	if !plugin.IsPermanent(err) || !errors.Is(err, ErrBadRestore) {
		t.Errorf("unknown action: %v", err)
	}
	st, err := p.Stage(plugin.RestoreStep{Input: []byte(`{"action":"reset"}`)})
	if err != nil || st.Needed || st.Into != "" {
		t.Errorf("reset stages %+v, %v; want nothing", st, err)
	}
	if units := p.(plugin.DamageNamer).DamagedUnits([]string{"data/ks/t2-0123/nb-1-big-Data.db", "cassandra/schema.json", "data/ks/t2-0123/x"}); len(units) != 1 || units[0] != "ks.t2" {
		t.Errorf("damaged units %v", units)
	}
}
