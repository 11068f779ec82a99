package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// Driver registers the Cassandra plugin with the node (cmd/crayfish).
type Driver struct{}

// Name is "cassandra".
func (Driver) Name() string { return Name }

// Settings are the plugin's configuration keys, each prefixed with
// "cassandra_" (hosts → cassandra_hosts, --cassandra-hosts,
// CRAYFISH_CASSANDRA_HOSTS).
type Settings struct {
	Hosts          []string      `yaml:"hosts" help:"CQL contact points, this node's Cassandra first (comma-separated)"`
	Port           int           `yaml:"port" help:"CQL port"`
	Username       string        `yaml:"username" help:"CQL user name (PasswordAuthenticator)"`
	PasswordFile   string        `yaml:"password_file" help:"file holding the CQL password"`
	TLSCAFile      string        `yaml:"tls_ca_file" help:"PEM CA certificate(s) to trust for CQL over TLS"`
	TLSCertFile    string        `yaml:"tls_cert_file" help:"PEM client certificate for CQL (mutual TLS)"`
	TLSKeyFile     string        `yaml:"tls_key_file" help:"PEM key of cassandra_tls_cert_file"`
	DataDirs       []string      `yaml:"data_dirs" help:"Cassandra's data_file_directories (comma-separated)"`
	CommitlogDir   string        `yaml:"commitlog_dir" help:"Cassandra's commitlog_directory"`
	SavedCachesDir string        `yaml:"saved_caches_dir" help:"Cassandra's saved_caches_directory"`
	HintsDir       string        `yaml:"hints_dir" help:"Cassandra's hints_directory"`
	Nodetool       string        `yaml:"nodetool" help:"nodetool command line (words separated by spaces)"`
	SSTableLoader  string        `yaml:"sstableloader" help:"sstableloader (Cassandra's bulk loader) command line (words): restores onto a cluster of another size stream with it"`
	LoaderJobs     int           `yaml:"sstableloader_jobs" help:"how many bulk loaders a node runs at a time (a restore onto another cluster size)"`
	StartCommand   string        `yaml:"start_command" help:"shell command that starts Cassandra (it gets CRAYFISH_CASSANDRA_OVERRIDE during restores)"`
	StopCommand    string        `yaml:"stop_command" help:"shell command that stops Cassandra (must succeed when it is already stopped)"`
	OverrideFile   string        `yaml:"override_file" help:"where restores write the cassandra.yaml override (tokens) for the start command (default: in the data dir)"`
	StartTimeout   time.Duration `yaml:"start_timeout" help:"how long to wait for CQL after starting Cassandra"`
	LogFile        string        `yaml:"log_file" help:"Cassandra's system.log (restores read what it logged about the SSTables they loaded)"`
	FileOwner      string        `yaml:"file_owner" help:"user:group (or uid:gid) given what restores put into Cassandra's directories (default: the data directory's owner)"`
	// Point-in-time recovery (docs/cassandra-pitr.md).
	CommitlogArchive       bool          `yaml:"commitlog_archive" help:"archive Cassandra's closed commit-log segments into the agent's spool; backups carry them, for restores to a time (restart Cassandra once after the agent first writes cassandra_commitlog_archiving_file)"`
	CommitlogArchivingFile string        `yaml:"commitlog_archiving_file" help:"the commitlog_archiving.properties Cassandra reads from its classpath (the agent writes it)"`
	CommitlogKeep          time.Duration `yaml:"commitlog_keep" help:"how long archived segments stay in the spool after they closed (backups carry the spool)"`

	// dataDir is the agent's (Finish): the commit-log spool is below it.
	dataDir string
}

// NewConfig returns the defaults of a packaged Cassandra (systemd unit,
// /var/lib/cassandra).
func (Driver) NewConfig() plugin.Config {
	return &Settings{
		Hosts:          []string{"127.0.0.1"},
		Port:           9042,
		DataDirs:       []string{"/var/lib/cassandra/data"},
		CommitlogDir:   "/var/lib/cassandra/commitlog",
		SavedCachesDir: "/var/lib/cassandra/saved_caches",
		HintsDir:       "/var/lib/cassandra/hints",
		Nodetool:       "nodetool",
		SSTableLoader:  "sstableloader",
		LoaderJobs:     2,
		StartCommand:   "systemctl start cassandra",
		StopCommand:    "systemctl stop cassandra",
		StartTimeout:   5 * time.Minute,
		LogFile:        "/var/log/cassandra/system.log",

		CommitlogArchivingFile: "/etc/cassandra/commitlog_archiving.properties",
		CommitlogKeep:          48 * time.Hour,
	}
}

// Finish puts the override file in the data dir unless set, and checks
// the settings.
func (s *Settings) Finish(env plugin.Env) error {
	if s.OverrideFile == "" {
		s.OverrideFile = filepath.Join(env.DataDir, "cassandra-override.yaml")
	}
	s.dataDir = env.DataDir
	_, err := s.Config()
	return err
}

// Config resolves the settings (reading the password file).
func (s *Settings) Config() (Config, error) {
	c := Config{
		Hosts: s.Hosts, Port: s.Port, Username: s.Username,
		TLSCAFile: s.TLSCAFile, TLSCertFile: s.TLSCertFile, TLSKeyFile: s.TLSKeyFile,
		DataDirs: s.DataDirs, CommitlogDir: s.CommitlogDir, SavedCachesDir: s.SavedCachesDir,
		HintsDir: s.HintsDir, Nodetool: strings.Fields(s.Nodetool), SSTableLoader: strings.Fields(s.SSTableLoader), LoaderJobs: s.LoaderJobs,
		StartCommand: s.StartCommand, StopCommand: s.StopCommand,
		OverrideFile: s.OverrideFile, StartTimeout: s.StartTimeout, LogFile: s.LogFile, FileOwner: s.FileOwner,
		CommitlogArchive: s.CommitlogArchive, ArchivingFile: s.CommitlogArchivingFile, CommitlogKeep: s.CommitlogKeep,
	}
	if s.dataDir != "" {
		c.SpoolDir = SpoolDir(s.dataDir)
	}
	if c.CommitlogArchive {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("cassandra_commitlog_archive: the crayfish executable: %w", err)
		}
		c.Executable = exe
	}
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return c, fmt.Errorf("cassandra_password_file: %w", err)
		}
		c.Password = strings.TrimSpace(string(b))
	}
	return c, c.Validate()
}

// Open returns the node's Cassandra plugin.
func (Driver) Open(cfg plugin.Config, env plugin.Env) (plugin.Plugin, error) {
	s, ok := cfg.(*Settings)
	if !ok {
		return nil, fmt.Errorf("cassandra: configuration of type %T", cfg)
	}
	c, err := s.Config()
	if err != nil {
		return nil, err
	}
	if c.SpoolDir == "" && env.DataDir != "" {
		c.SpoolDir = SpoolDir(env.DataDir)
	}
	p, err := New(c, env.Log)
	if err != nil {
		return nil, err
	}
	if c.CommitlogArchive {
		// Cassandra reads the file at start-up only: a Cassandra running
		// before the agent first wrote it archives nothing until restarted.
		if err := p.writeArchiving(nil); err != nil {
			return nil, err
		}
	}
	return nodePlugin{p}, nil
}

// nodePlugin is the plugin as the node calls it: the typed calls of
// Plugin behind the seam, with the failures a retry cannot fix marked.
type nodePlugin struct{ p *Plugin }

// Snapshot fills dir with the tree (hard links to Cassandra's own
// snapshot, which never changes): the node reads it in place.
func (n nodePlugin) Snapshot(ctx context.Context, tag, dir string) (plugin.Source, error) {
	meta, err := n.p.Snapshot(ctx, tag, dir)
	if errors.Is(err, ErrUnavailable) {
		err = plugin.Permanent(err)
	}
	return plugin.Source{Root: dir, InPlace: true, Meta: meta}, err
}

func (n nodePlugin) Release(ctx context.Context, tag string) error {
	return n.p.ReleaseSnapshot(ctx, tag)
}

// Stage downloads what the action needs into the staging directory.
func (n nodePlugin) Stage(step plugin.RestoreStep) (plugin.Stage, error) {
	a, err := parseAction(step.Input)
	if err != nil {
		return plugin.Stage{}, err
	}
	inc, exc, needed := StageFilter(a)
	st := plugin.Stage{Needed: needed, Include: inc, Exclude: exc}
	if a.Action == ActionSegments {
		st.Sub = segmentsSub
	}
	if a.Source != "" {
		if !validSource(a.Source) {
			return plugin.Stage{}, plugin.Permanent(fmt.Errorf("%w: backed-up node %q", ErrBadRestore, a.Source))
		}
		st.Sub = sourceSub(a.Source)
	}
	return st, nil
}

func (n nodePlugin) Restore(ctx context.Context, step plugin.RestoreStep, dir string) (json.RawMessage, error) {
	a, err := parseAction(step.Input)
	if err != nil {
		return nil, err
	}
	// Only the actions that put a node back as backed up read its
	// record: a node without a counterpart (a restore onto more nodes)
	// has none.
	src, err := ParseNodeMeta(step.Source)
	if err != nil && (a.Action == ActionReset || a.Action == ActionNode) {
		return nil, plugin.Permanent(err)
	}
	err = n.p.Restore(ctx, dir, a, src)
	if errors.Is(err, ErrBadRestore) || errors.Is(err, ErrTablesNotRestored) {
		err = plugin.Permanent(err)
	}
	if err == nil && (a.Action == ActionLoad || a.Action == ActionReplay || a.Action == ActionNode) && a.ToTime != nil {
		return readReplay(dir), nil
	}
	return nil, err
}

func parseAction(input json.RawMessage) (RestoreAction, error) {
	var a RestoreAction
	if err := json.Unmarshal(input, &a); err != nil {
		return a, plugin.Permanent(fmt.Errorf("%w: step input: %v", ErrBadRestore, err))
	}
	return a, nil
}

// DamagedUnits names the tables whose staged files (data/<keyspace>/
// <table>-<id>/...) are damaged: the restore refuses to load them.
func (n nodePlugin) DamagedUnits(paths []string) []string {
	seen := map[string]bool{}
	var tables []string
	for _, p := range paths {
		parts := strings.SplitN(p, "/", 4)
		if len(parts) < 4 || parts[0] != dataPrefix {
			continue
		}
		table, _, _ := strings.Cut(parts[2], "-")
		if name := parts[1] + "." + table; !seen[name] {
			seen[name] = true
			tables = append(tables, name)
		}
	}
	slices.Sort(tables)
	return tables
}

// DescribeColumns are the columns crayfish describe shows per node.
func (Driver) DescribeColumns() []string {
	return []string{"CASSANDRA HOST ID", "DC", "RACK", "TOKENS", "TABLES", "VERSION"}
}

// Describe is one node's row of DescribeColumns.
func (Driver) Describe(meta json.RawMessage) (map[string]string, error) {
	m, err := ParseNodeMeta(meta)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"CASSANDRA HOST ID": m.HostID, "DC": m.DataCenter, "RACK": m.Rack,
		"TOKENS": fmt.Sprint(len(m.Tokens)), "TABLES": fmt.Sprint(len(m.Tables)), "VERSION": m.Release,
	}, nil
}

// What the driver and its node-side plugin implement of the seam.
var (
	_ plugin.Driver       = Driver{}
	_ plugin.Reshaper     = Driver{}
	_ plugin.TimeRestorer = Driver{}
	_ plugin.Describer    = Driver{}
	_ plugin.DamageNamer  = nodePlugin{}
)
