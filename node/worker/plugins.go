package worker

import (
	"fmt"
	"log/slog"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// PluginSet is the plugins a node's worker runs: its own (backups and
// its restores) and the portable ones (a files backup restored into a
// target on a node of another plugin).
type PluginSet struct {
	own    string
	opened map[string]plugin.Plugin
}

// OpenPlugins opens the node's own plugin, own, and every portable
// driver of drivers, each with its configuration from config.
func OpenPlugins(own plugin.Driver, drivers []plugin.Driver, config func(name string) plugin.Config, env plugin.Env) (*PluginSet, error) {
	ps := &PluginSet{own: own.Name(), opened: map[string]plugin.Plugin{}}
	log := env.Log
	env.Log = log.With("plugin", own.Name())
	p, err := own.Open(config(own.Name()), env)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", own.Name(), err)
	}
	ps.opened[own.Name()] = p
	for _, d := range drivers {
		if pd, ok := d.(plugin.Portable); !ok || !pd.Portable() || d.Name() == own.Name() {
			continue
		}
		// Not this node's plugin: its configuration warnings are not the
		// operator's concern.
		env.Log = slog.New(slog.DiscardHandler)
		if ps.opened[d.Name()], err = d.Open(config(d.Name()), env); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", d.Name(), err)
		}
	}
	return ps, nil
}

// NewPluginSet is a set of plugins already opened; own names the node's.
func NewPluginSet(own string, opened map[string]plugin.Plugin) *PluginSet {
	return &PluginSet{own: own, opened: opened}
}

// Own is the node's configured plugin.
func (np *PluginSet) Own() plugin.Plugin { return np.opened[np.own] }

// For returns the plugin that restores a backup taken by the plugin
// called name: the node's own, or a portable one. Another database's
// restore never runs on this node (it would stop and clear a database the
// node was not configured for).
func (np *PluginSet) For(name string) (plugin.Plugin, error) {
	if p, ok := np.opened[name]; ok {
		return p, nil
	}
	return nil, wire.Permanent(fmt.Errorf("%w: the backup was taken by the %s plugin; this node runs %s", wire.ErrBadRequest, name, np.own))
}
