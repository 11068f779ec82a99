package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree/pattern"
)

// Name is the plugin's name in configuration and manifests.
const Name = "files"

// Driver is the files plugin's driver.
type Driver struct{}

// Name is "files".
func (Driver) Name() string { return Name }

// Prefix is empty: the keys root, include, exclude and in_place predate
// plugins and keep their names.
func (Driver) Prefix() string { return "" }

// Portable: restoring files needs no database, so any node may restore a
// files backup (into a target when it has no root).
func (Driver) Portable() bool { return true }

// SelectsPaths: selections are path globs matched against the backup.
func (Driver) SelectsPaths() bool { return true }

// Config is what a files node backs up.
type Config struct {
	// Root is the tree backed up and, without a target, restored.
	Root string `yaml:"root" help:"directory tree to back up and restore"`
	// Include and Exclude select paths below Root (node/tree patterns).
	Include []string `yaml:"include" help:"back up only entries matching these patterns (comma-separated; ** matches any depth)"`
	Exclude []string `yaml:"exclude" help:"leave out entries matching these patterns and everything below them (comma-separated)"`
	// InPlace reads the root as it is instead of hard-linking it first.
	InPlace bool `yaml:"in_place" help:"read files where they are, trusting that nothing changes them during the backup (for trees that are already immutable snapshots)"`
	// HardLink links every new file into the snapshot directory before
	// reading it (point in time against deletions and replacements).
	HardLink bool `yaml:"hard_link" help:"hard-link files into a point-in-time copy before reading them, so files deleted or replaced during the backup are still read as they were (slower; needs data_dir on root's filesystem)"`
}

// NewConfig returns the defaults: no root.
func (Driver) NewConfig() plugin.Config { return &Config{} }

// Finish makes Root absolute and checks it against the agent's data dir
// and the patterns.
func (c *Config) Finish(env plugin.Env) error {
	if c.Root == "" {
		return errors.New("root must be set (the directory tree to back up)")
	}
	var err error
	if c.Root, err = filepath.Abs(c.Root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	// Restore makes root exactly equal to a backup and removes everything
	// else in it, so the agent's own state must not live inside it (nor
	// the other way round, or snapshots would contain themselves).
	if fsutil.Within(env.DataDir, c.Root) || fsutil.Within(c.Root, env.DataDir) {
		return fmt.Errorf("data_dir %s and root %s must not contain each other", env.DataDir, c.Root)
	}
	if err := pattern.Validate(c.Include); err != nil {
		return fmt.Errorf("include: %w", err)
	}
	if err := pattern.Validate(c.Exclude); err != nil {
		return fmt.Errorf("exclude: %w", err)
	}
	return nil
}

// Open returns the node's files plugin. Its configuration need not have
// a root: a node of another plugin restores files backups into targets.
func (Driver) Open(cfg plugin.Config, env plugin.Env) (plugin.Plugin, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("files: configuration of type %T", cfg)
	}
	if other, err := otherFilesystem(env.DataDir, c.Root); err == nil && other && c.HardLink && !c.InPlace && env.Log != nil {
		env.Log.Warn("data_dir is on another filesystem than root: every snapshot copies the files it cannot hard-link (a full copy of the root per backup: time, disk space and I/O on the database host); put data_dir on root's filesystem, or turn hard_link off",
			"data_dir", env.DataDir, "root", c.Root)
	}
	return &Plugin{cfg: *c}, nil
}

// otherFilesystem reports whether dir and root lie on different
// filesystems (hard links between them fail).
func otherFilesystem(dir, root string) (bool, error) {
	if root == "" || dir == "" {
		return false, nil
	}
	var a, b unix.Stat_t
	if err := unix.Stat(dir, &a); err != nil {
		return false, err
	}
	if err := unix.Stat(root, &b); err != nil {
		return false, err
	}
	return a.Dev != b.Dev, nil
}

// Plugin backs up and restores the tree at the configured root.
type Plugin struct{ cfg Config }

// Snapshot hands the root to the node: it reads live (or hard-links, or
// reads in place) what the patterns choose.
func (p *Plugin) Snapshot(_ context.Context, _, _ string) (plugin.Source, error) {
	if p.cfg.Root == "" {
		return plugin.Source{}, plugin.Permanent(errors.New("files: no root configured"))
	}
	return plugin.Source{Root: p.cfg.Root, InPlace: p.cfg.InPlace, Link: p.cfg.HardLink, Include: p.cfg.Include, Exclude: p.cfg.Exclude}, nil
}

// Release has nothing to drop: the node removes its own snapshot dir.
func (p *Plugin) Release(context.Context, string) error { return nil }

// Action is the files planner's input to a restore step.
type Action struct {
	// Select limits the restore to these path patterns.
	Select []string `json:"select,omitempty"`
	// Delete makes a restore into a target remove what the backup lacks.
	Delete bool `json:"delete,omitempty"`
}

// Stage restores straight into the target (additive unless Delete) or
// into the root (a mirror), within the configured patterns and the
// selection.
func (p *Plugin) Stage(step plugin.RestoreStep) (plugin.Stage, error) {
	var a Action
	if len(step.Input) > 0 {
		if err := json.Unmarshal(step.Input, &a); err != nil {
			return plugin.Stage{}, plugin.Permanent(fmt.Errorf("files restore step: %w", err))
		}
	}
	st := plugin.Stage{Needed: true, Include: p.cfg.Include, Exclude: p.cfg.Exclude, Select: a.Select, Owners: true}
	switch {
	case step.Target != "":
		st.Into, st.KeepExtra = filepath.Clean(step.Target), !a.Delete
	case p.cfg.Root != "":
		st.Into = p.cfg.Root
	default:
		return st, plugin.Permanent(fmt.Errorf("%w: this node has no root (it runs another plugin): restore backup %s with a target directory", plugin.ErrBadRequest, step.BackupID))
	}
	return st, nil
}

// Restore has nothing left to do: the node restored the files into Into.
func (p *Plugin) Restore(context.Context, plugin.RestoreStep, string) (json.RawMessage, error) {
	return nil, nil
}

// What the driver implements of the seam.
var (
	_ plugin.Driver       = Driver{}
	_ plugin.Prefixed     = Driver{}
	_ plugin.Portable     = Driver{}
	_ plugin.PathSelector = Driver{}
)
