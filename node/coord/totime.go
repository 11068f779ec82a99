package coord

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// maxLaterAfter bounds how many backups started after the restore's time
// a restore to a time reads: the database log that reaches the time is in
// the first backups taken once it closed, and every manifest read is a
// request to the repository.
const maxLaterAfter = 16

// timeRestoreBackups chooses the backup a restore to t starts from (the
// newest of this cluster's plugin finished at or before t, or the named
// one, which must have finished by then) and the later backups the
// planner may take the database's log from: every backup of the same
// plugin finished after it, in time order, up to the maxLaterAfter-th
// that started after t.
func (o *Operations) timeRestoreBackups(ctx context.Context, backupID string, t time.Time) (string, []*storage.Manifest, error) {
	ids, err := o.catalog.ListBackupIDs(ctx)
	if err != nil {
		return "", nil, err
	}
	slices.Sort(ids) // backup ids sort by time
	var base *storage.Manifest
	if backupID != "" {
		if !storage.ValidBackupID(backupID) {
			return "", nil, fmt.Errorf("%w: invalid backup id %q", wire.ErrBadRequest, backupID)
		}
		if base, err = o.catalog.GetManifest(ctx, backupID); err != nil {
			return "", nil, err
		}
		if base.FinishedAt.After(t) {
			return "", nil, fmt.Errorf("%w: backup %s finished at %s, after the time to restore to (%s): name a backup finished by then, or none",
				wire.ErrBadRequest, backupID, base.FinishedAt.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339Nano))
		}
	} else {
		for i := len(ids) - 1; i >= 0 && base == nil; i-- {
			m, err := o.catalog.GetManifest(ctx, ids[i])
			if err != nil {
				return "", nil, err
			}
			if o.clusterPlugin(m) && !m.FinishedAt.After(t) {
				base = m
			}
		}
		if base == nil {
			return "", nil, fmt.Errorf("%w: no backup of this cluster finished at or before %s: a restore to a time starts from a backup taken before it",
				wire.ErrBadRequest, t.UTC().Format(time.RFC3339Nano))
		}
	}
	var later []*storage.Manifest
	after := 0
	for _, id := range ids {
		if id <= base.BackupID || after >= maxLaterAfter {
			continue
		}
		m, err := o.catalog.GetManifest(ctx, id)
		if err != nil {
			return "", nil, err
		}
		if m.Plugin != base.Plugin || !m.FinishedAt.After(base.FinishedAt) {
			continue
		}
		later = append(later, m)
		if m.StartedAt.After(t) {
			after++
		}
	}
	slices.SortStableFunc(later, func(a, b *storage.Manifest) int { return a.StartedAt.Compare(b.StartedAt) })
	return base.BackupID, later, nil
}

// clusterPlugin: a backup this cluster's plugin took (any, when the
// coordinator does not know its plugin).
func (o *Operations) clusterPlugin(m *storage.Manifest) bool {
	return o.engine.cfg.Plugin == "" || m.Plugin == o.engine.cfg.Plugin
}

// laterBackups is what the planner learns of the later backups: their
// times and each node's recorded metadata.
func laterBackups(ms []*storage.Manifest) []plugin.LaterBackup {
	var out []plugin.LaterBackup
	for _, m := range ms {
		l := plugin.LaterBackup{BackupID: m.BackupID, StartedAt: m.StartedAt, FinishedAt: m.FinishedAt}
		for _, n := range m.Nodes {
			l.Nodes = append(l.Nodes, plugin.NodeAssignment{Source: n.NodeID, Meta: n.Plugin})
		}
		out = append(out, l)
	}
	return out
}
