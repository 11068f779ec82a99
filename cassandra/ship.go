package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// Shipping (plugin.LogShipper): with cassandra_commitlog_archive the
// node uploads each spooled segment as it comes (a log archive), so a
// restore to a time reaches the last closed segment, not only the last
// backup. In the archive a segment has the path it has in a backup,
// commitlog/<name>, and the record is a NodeMeta with the host id and
// the segments: the planner reads archives as later backups.

// ClosedLogs lists the spooled segments (none with archiving off).
func (n nodePlugin) ClosedLogs(ctx context.Context) (plugin.Logs, error) {
	spool := n.p.cfg.SpoolDir
	if !n.p.cfg.CommitlogArchive || spool == "" {
		return plugin.Logs{}, nil
	}
	segs, err := spooledSegments(spool)
	if err != nil {
		return plugin.Logs{}, fmt.Errorf("commit-log spool: %w", err)
	}
	logs := plugin.Logs{Root: filepath.Dir(spool)}
	for _, s := range segs {
		logs.Files = append(logs.Files, plugin.LogFile{Path: path.Join(filepath.Base(spool), s.Name), ClosedAt: s.ClosedAt, Size: s.Size})
	}
	return logs, nil
}

// LogRecord names the Cassandra node that wrote the segments: its host
// id, read now, or, while Cassandra does not answer (it crashed: the
// segments it closed before matter most), the one the spool recorded
// when it last did (<spool>/.host_id). The segments must still be in the
// spool afterwards: a full restore moves the spool aside (its .host_id
// with it) before Cassandra comes back as another host, so segments of
// the old history are never recorded under the new host id, nor the
// reverse.
func (n nodePlugin) LogRecord(ctx context.Context, files []plugin.LogFile) (json.RawMessage, error) {
	spool := n.p.cfg.SpoolDir
	dirBefore, err := os.Stat(spool)
	if err != nil {
		return nil, err
	}
	local, err := n.p.localNodeNow(ctx)
	switch {
	case err == nil:
		// Recorded only if the spool was not moved aside meanwhile.
		if dirAfter, serr := os.Stat(spool); serr == nil && os.SameFile(dirBefore, dirAfter) {
			if werr := fsutil.WriteFileAtomicMode(filepath.Join(spool, hostIDFile), []byte(local.HostID), 0o644); werr != nil {
				return nil, werr
			}
		}
	default:
		b, rerr := os.ReadFile(filepath.Join(spool, hostIDFile))
		if rerr != nil || len(b) == 0 {
			return nil, fmt.Errorf("%w (and the spool has no recorded host id: %v)", err, rerr)
		}
		local = LocalNode{HostID: string(b)}
	}
	meta := NodeMeta{LocalNode: local}
	for _, f := range files {
		name := path.Base(f.Path)
		id, err := ParseSegmentName(name)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(filepath.Join(spool, name))
		if err != nil || info.Size() != f.Size {
			return nil, fmt.Errorf("spooled segment %s changed or left the spool while its host id was read (%v)", name, err)
		}
		meta.Commitlog = append(meta.Commitlog, Segment{Name: name, ID: id, ClosedAt: f.ClosedAt.UTC(), Size: f.Size})
	}
	return json.Marshal(meta)
}

// hostIDFile records, in the spool, the host id of the Cassandra whose
// segments it holds.
const hostIDFile = ".host_id"

// localNodeNow asks Cassandra who it is.
func (p *Plugin) localNodeNow(ctx context.Context) (LocalNode, error) {
	s, err := p.session(ctx)
	if err != nil {
		return LocalNode{}, err
	}
	defer s.Close()
	return localNode(ctx, s)
}

var _ plugin.LogShipper = nodePlugin{}
