package main

import (
	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/m3db"
	"github.com/crayfish-backup/crayfish/node"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
)

// drivers is the one list of plugins: a new database is one package and
// one line here.
var drivers = []plugin.Driver{
	files.Driver{},
	cassandra.Driver{},
	m3db.Driver{},
}

// newConfig is the agent's default configuration with every plugin
// registered.
func newConfig() node.Config { return node.DefaultConfig(drivers...) }

// describer returns the driver of plugin name when it can describe its
// backed-up nodes.
func describer(name string) (plugin.Describer, bool) {
	for _, d := range drivers {
		if d.Name() == name {
			ds, ok := d.(plugin.Describer)
			return ds, ok
		}
	}
	return nil, false
}
