package coord

import (
	"context"
	"errors"
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

// logsMargin widens which log archives a restore to a time reads: those
// with a file closed up to this long before the backup began (a node's
// clock may be behind; the planner takes what it needs).
const logsMargin = time.Hour

// maxLogsAfter bounds the log archives shipped after the time that a
// restore to it reads (each is a request to the repository): the one
// holding the time is among each node's first.
const maxLogsAfter = 64

// timeRestoreLogs lists the log archives (shipped by nodes between
// backups, plugin.LogShipper) of base's plugin a restore from base to t
// may replay: in time order, those holding a file closed since base
// began (less logsMargin), up to the maxLogsAfter-th shipped after t.
// Their ids begin with the time they were shipped, which is after their
// files closed, so older ones are not read at all.
func (o *Operations) timeRestoreLogs(ctx context.Context, base *storage.Manifest, t time.Time) ([]*storage.LogArchive, error) {
	ids, err := o.catalog.ListLogArchiveIDs(ctx)
	if err != nil {
		return nil, err
	}
	from := base.StartedAt.Add(-logsMargin)
	var out []*storage.LogArchive
	after := 0
	for _, id := range ids {
		if shipped, ok := storage.LogArchiveTime(id); ok && shipped.Before(from) {
			continue
		}
		if after >= maxLogsAfter {
			break
		}
		a, err := o.catalog.GetLogArchive(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted by retention meanwhile
		}
		if err != nil {
			return nil, err
		}
		if a.Plugin != base.Plugin || a.To.Before(from) {
			continue
		}
		out = append(out, a)
		if a.From.After(t) {
			after++
		}
	}
	return out, nil
}

// laterLogs is what the planner learns of log archives: each a later
// backup of one node, with the archive's time range.
func laterLogs(as []*storage.LogArchive) []plugin.LaterBackup {
	var out []plugin.LaterBackup
	for _, a := range as {
		out = append(out, plugin.LaterBackup{LogArchive: a.ID, StartedAt: a.From, FinishedAt: a.To,
			Nodes: []plugin.NodeAssignment{{Source: a.Node.NodeID, Meta: a.Node.Plugin}}})
	}
	return out
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
