package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrSchemaChanged marks a schema that changed while a snapshot was taken.
var ErrSchemaChanged = errors.New("the cassandra schema changed during the snapshot")

// Snapshot takes Cassandra's snapshot named tag and fills dir with the
// tree a backup captures (hard links to the snapshot's files, which
// Cassandra never changes, and the node's identity and schema). A repeat
// starts over: an old snapshot of the same tag is cleared first.
func (p *Plugin) Snapshot(ctx context.Context, tag, dir string) (json.RawMessage, error) {
	s, err := p.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	before, err := localNode(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := checkSchemaAgreement(ctx, s, before.SchemaVersion); err != nil {
		return nil, err
	}
	schema, err := describeSchema(ctx, s)
	if err != nil {
		return nil, err
	}
	if old, err := p.snapshotDirs(tag); err == nil && len(old) > 0 {
		// A repeat after a crash: start over (nodetool refuses an
		// existing tag).
		if _, err := p.nodetool(ctx, "clearsnapshot", "-t", tag); err != nil {
			return nil, fmt.Errorf("nodetool clearsnapshot: %w", err)
		}
	}
	if _, err := p.nodetool(ctx, "snapshot", "-t", tag); err != nil {
		return nil, fmt.Errorf("nodetool snapshot: %w", err)
	}
	after, err := localNode(ctx, s)
	if err != nil {
		return nil, err
	}
	if after.SchemaVersion != before.SchemaVersion {
		return nil, fmt.Errorf("%w: version %s became %s", ErrSchemaChanged, before.SchemaVersion, after.SchemaVersion)
	}
	if err := p.linkSnapshot(tag, dir); err != nil {
		return nil, err
	}
	meta := NodeMeta{LocalNode: before}
	if p.cfg.SpoolDir != "" {
		// The archived segments ride in every backup (unchanged ones cost
		// no upload): a restore to a time finds them in later backups.
		if meta.Commitlog, err = p.linkSegments(dir, time.Now()); err != nil {
			return nil, err
		}
	}
	for _, it := range schema {
		if it.Type == "table" || it.Type == "materialized_view" {
			meta.Tables = append(meta.Tables, it.Keyspace+"."+it.Name)
		}
		if base := it.baseTable(); it.Type == "materialized_view" && base != "" {
			if meta.Views == nil {
				meta.Views = map[string]string{}
			}
			meta.Views[it.Keyspace+"."+it.Name] = it.Keyspace + "." + base
		}
	}
	slices.Sort(meta.Tables)
	for name, v := range map[string]any{nodeFile: before, schemaFile: schema} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, err
		}
		f := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return nil, err
		}
	}
	p.log.Info("cassandra snapshot taken", "tag", tag, "host_id", before.HostID, "tables", len(meta.Tables), "commitlog_segments", len(meta.Commitlog))
	return json.Marshal(meta)
}

// snapshotDirs finds <data>/<ks>/<table>-<id>/snapshots/<tag> in every
// data directory.
func (p *Plugin) snapshotDirs(tag string) ([]string, error) {
	var out []string
	for _, dd := range p.cfg.DataDirs {
		m, err := filepath.Glob(filepath.Join(dd, "*", "*", "snapshots", tag))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// linkSnapshot hard-links the files of snapshot tag into
// dir/data/<ks>/<table dir>/. Cassandra's manifest.json lists one data
// directory's files only and is left out; schema.cql is kept once.
func (p *Plugin) linkSnapshot(tag, dir string) error {
	snaps, err := p.snapshotDirs(tag)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return fmt.Errorf("nodetool snapshot %s left no snapshot directory under %v", tag, p.cfg.DataDirs)
	}
	for _, snap := range snaps {
		tableDir := filepath.Dir(filepath.Dir(snap))
		ks, table := filepath.Base(filepath.Dir(tableDir)), filepath.Base(tableDir)
		dst := filepath.Join(dir, dataPrefix, ks, table)
		err := filepath.WalkDir(snap, func(src string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(snap, src)
			target := filepath.Join(dst, rel)
			switch {
			case d.IsDir():
				return os.MkdirAll(target, 0o755)
			case rel == "manifest.json":
				return nil
			case !d.Type().IsRegular():
				return fmt.Errorf("unexpected %s in a cassandra snapshot: %s", d.Type(), src)
			}
			if err := os.Link(src, target); err != nil {
				if errors.Is(err, fs.ErrExist) && rel == "schema.cql" {
					return nil
				}
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("two data directories hold %s/%s/%s", ks, table, rel)
				}
				return fmt.Errorf("link %s: %w (crayfish's data dir must be on the same file system as the cassandra data directories)", src, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ReleaseSnapshot drops Cassandra's snapshot tag. When nodetool cannot
// (Cassandra is down) the snapshot directories are removed directly: they
// hold only hard links.
func (p *Plugin) ReleaseSnapshot(ctx context.Context, tag string) error {
	if tag == "" || strings.ContainsAny(tag, "/*?[") {
		return fmt.Errorf("invalid snapshot tag %q", tag)
	}
	if _, err := p.nodetool(ctx, "clearsnapshot", "-t", tag); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return err
	} else {
		p.log.Warn("nodetool clearsnapshot failed; removing the snapshot directories", "tag", tag, "err", err)
	}
	snaps, err := p.snapshotDirs(tag)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if err := os.RemoveAll(s); err != nil {
			return err
		}
	}
	return nil
}

// Snapshots lists the snapshot tags present on disk (for tests and
// operators: a failed backup must leave none behind).
func (p *Plugin) Snapshots() ([]string, error) {
	seen := map[string]bool{}
	for _, dd := range p.cfg.DataDirs {
		m, err := filepath.Glob(filepath.Join(dd, "*", "*", "snapshots", "*"))
		if err != nil {
			return nil, err
		}
		for _, s := range m {
			seen[filepath.Base(s)] = true
		}
	}
	var out []string
	for t := range seen {
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}
