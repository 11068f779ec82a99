package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/cassandra"
)

// Plugin is a database's part in a node's steps: what a snapshot takes
// and what a restore does with the downloaded files. Without a plugin a
// node backs up and restores the tree at its root.
type Plugin interface {
	Name() string
	// Snapshot fills dir with what the backup of operation tag captures
	// and returns the node's metadata for the manifest.
	Snapshot(ctx context.Context, tag, dir string) (json.RawMessage, error)
	// ReleaseSnapshot drops what Snapshot left outside dir.
	ReleaseSnapshot(ctx context.Context, tag string) error
	// RestoreFilter says which backed-up paths a restore step needs
	// downloaded before Restore runs (needed false: none).
	RestoreFilter(input json.RawMessage) (include, exclude []string, needed bool, err error)
	// Restore performs a restore step with the files staged in dir, taken
	// from the backed-up node whose metadata is meta.
	Restore(ctx context.Context, dir string, input, meta json.RawMessage) error
}

// newPlugin returns the configured plugin (nil for plain files).
func newPlugin(cfg Config, log *slog.Logger) (Plugin, error) {
	if cfg.Plugin != cassandra.Name {
		return nil, nil
	}
	cc, err := cfg.CassandraConfig()
	if err != nil {
		return nil, err
	}
	p, err := cassandra.New(cc, log)
	if err != nil {
		return nil, err
	}
	return cassandraPlugin{p}, nil
}

// cassandraPlugin adapts the cassandra package's typed calls and marks
// the failures a retry cannot fix.
type cassandraPlugin struct{ *cassandra.Plugin }

func (c cassandraPlugin) Snapshot(ctx context.Context, tag, dir string) (json.RawMessage, error) {
	meta, err := c.Plugin.Snapshot(ctx, tag, dir)
	if errors.Is(err, cassandra.ErrUnavailable) {
		err = permanent(err)
	}
	return meta, err
}

func (c cassandraPlugin) RestoreFilter(input json.RawMessage) ([]string, []string, bool, error) {
	var a cassandra.RestoreAction
	if err := json.Unmarshal(input, &a); err != nil {
		return nil, nil, false, permanent(err)
	}
	inc, exc, needed := cassandra.StageFilter(a)
	return inc, exc, needed, nil
}

func (c cassandraPlugin) Restore(ctx context.Context, dir string, input, meta json.RawMessage) error {
	var a cassandra.RestoreAction
	if err := json.Unmarshal(input, &a); err != nil {
		return permanent(err)
	}
	src, err := cassandra.ParseNodeMeta(meta)
	if err != nil {
		return permanent(err)
	}
	err = c.Plugin.Restore(ctx, dir, a, src)
	if errors.Is(err, cassandra.ErrBadRestore) || errors.Is(err, cassandra.ErrTablesNotRestored) {
		err = permanent(err)
	}
	return err
}

// DamagedUnits names the tables whose staged files (data/<keyspace>/
// <table>-<id>/...) are damaged: the restore refuses to load them.
func (c cassandraPlugin) DamagedUnits(paths []string) []string {
	seen := map[string]bool{}
	var tables []string
	for _, p := range paths {
		parts := strings.SplitN(p, "/", 4)
		if len(parts) < 4 || parts[0] != "data" {
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
