package node

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/worker"
)

// Plugins holds the drivers cmd/crayfish registered and each one's
// configuration. Every node knows every driver: a node restores files
// backups whatever plugin it runs, and the keys of every plugin are valid
// (and ignored unless that plugin is the node's).
type Plugins struct {
	drivers []plugin.Driver
	configs map[string]plugin.Config
}

// NewPlugins registers drivers with their default configurations.
func NewPlugins(drivers ...plugin.Driver) *Plugins {
	p := &Plugins{configs: map[string]plugin.Config{}}
	for _, d := range drivers {
		p.drivers = append(p.drivers, d)
		p.configs[d.Name()] = d.NewConfig()
	}
	return p
}

// Driver returns the driver called name.
func (p *Plugins) Driver(name string) (plugin.Driver, bool) {
	if p == nil {
		return nil, false
	}
	i := slices.IndexFunc(p.drivers, func(d plugin.Driver) bool { return d.Name() == name })
	if i < 0 {
		return nil, false
	}
	return p.drivers[i], true
}

// Config returns the configuration of the driver called name (nil if
// none is registered).
func (p *Plugins) Config(name string) plugin.Config {
	if p == nil {
		return nil
	}
	return p.configs[name]
}

// Names lists the registered drivers.
func (p *Plugins) Names() []string {
	var out []string
	if p != nil {
		for _, d := range p.drivers {
			out = append(out, d.Name())
		}
	}
	return out
}

// ConfigField is one configuration key: of the agent, or of a plugin
// (with the driver's prefix). Value is settable.
type ConfigField struct {
	Key   string
	Help  string
	Value reflect.Value
	// FileOnly keys (a list of mappings) have no flag or environment
	// variable.
	FileOnly bool
}

// Fields lists every configuration key of c and its plugins, in order:
// the agent's, then each driver's. Flags and environment variables are
// derived from these keys (cmd/crayfish), so all three stay in step.
func (c *Config) Fields() []ConfigField {
	out := structFields("", reflect.ValueOf(c).Elem())
	if c.Plugins != nil {
		for _, d := range c.Plugins.drivers {
			v := reflect.ValueOf(c.Plugins.configs[d.Name()])
			if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
				continue
			}
			out = append(out, structFields(plugin.Prefix(d), v.Elem())...)
		}
	}
	return out
}

func structFields(prefix string, v reflect.Value) []ConfigField {
	var out []ConfigField
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		out = append(out, ConfigField{Key: prefix + key, Help: f.Tag.Get("help"), Value: v.Field(i), FileOnly: f.Tag.Get("flag") == "-"})
	}
	return out
}

// pluginFor returns the driver and configuration whose keys hold key.
func (p *Plugins) pluginFor(key string) (plugin.Config, string, bool) {
	if p == nil {
		return nil, "", false
	}
	for _, d := range p.drivers {
		prefix := plugin.Prefix(d)
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		cfg := p.configs[d.Name()]
		for _, f := range structFields("", reflect.ValueOf(cfg).Elem()) {
			if f.Key == rest {
				return cfg, rest, true
			}
		}
	}
	return nil, "", false
}

// activeDriver is the configured plugin's driver; one not registered is
// an error naming the registered ones.
func (c *Config) activeDriver() (plugin.Driver, error) {
	d, ok := c.Plugins.Driver(c.Plugin)
	if !ok {
		return nil, fmt.Errorf("config: plugin %q: want one of %s", c.Plugin, strings.Join(c.Plugins.Names(), ", "))
	}
	return d, nil
}

// openPlugins opens the node's plugin and the portable ones for its
// worker.
func openPlugins(cfg Config, log *slog.Logger) (*worker.PluginSet, error) {
	own, err := cfg.activeDriver()
	if err != nil {
		return nil, err
	}
	return worker.OpenPlugins(own, cfg.Plugins.drivers, cfg.Plugins.Config,
		plugin.Env{NodeID: cfg.NodeID, DataDir: cfg.DataDir, Log: log})
}
