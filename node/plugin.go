package node

import (
	"fmt"
	"log/slog"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// nodePlugins are the plugins a node's worker runs: its own (backups and
// its restores) and, opened on first use, the portable ones (a files
// backup restored into a target on a node of another plugin).
type nodePlugins struct {
	own     string
	opened  map[string]plugin.Plugin
	drivers *Plugins
	env     plugin.Env
}

// openPlugins opens the configured plugin and every portable one.
func openPlugins(cfg Config, log *slog.Logger) (*nodePlugins, error) {
	d, err := cfg.activeDriver()
	if err != nil {
		return nil, err
	}
	np := &nodePlugins{own: d.Name(), opened: map[string]plugin.Plugin{}, drivers: cfg.Plugins,
		env: plugin.Env{NodeID: cfg.NodeID, DataDir: cfg.DataDir, Log: log.With("plugin", d.Name())}}
	p, err := d.Open(cfg.Plugins.Config(d.Name()), np.env)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", d.Name(), err)
	}
	np.opened[d.Name()] = p
	for _, other := range cfg.Plugins.drivers {
		if pd, ok := other.(plugin.Portable); !ok || !pd.Portable() || other.Name() == d.Name() {
			continue
		}
		env := np.env
		env.Log = slog.New(slog.DiscardHandler) // not this node's plugin: its configuration warnings are not the operator's concern
		if np.opened[other.Name()], err = other.Open(cfg.Plugins.Config(other.Name()), env); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", other.Name(), err)
		}
	}
	return np, nil
}

// Own is the node's configured plugin.
func (np *nodePlugins) Own() plugin.Plugin { return np.opened[np.own] }

// For returns the plugin that restores a backup taken by the plugin
// called name: the node's own, or a portable one. Another database's
// restore never runs on this node (it would stop and clear a database the
// node was not configured for).
func (np *nodePlugins) For(name string) (plugin.Plugin, error) {
	if p, ok := np.opened[name]; ok {
		return p, nil
	}
	return nil, wire.Permanent(fmt.Errorf("%w: the backup was taken by the %s plugin; this node runs %s", wire.ErrBadRequest, name, np.own))
}
