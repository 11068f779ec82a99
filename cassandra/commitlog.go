package cassandra

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cassandra hands every closed commit-log segment to the archive_command
// of commitlog_archiving.properties (and, at start-up, every segment left
// in its commit-log directory). With cassandra_commitlog_archive the
// command is `crayfish cassandra-archive-segment <spool> %path %name`,
// which hard-links the segment into the spool; every backup's snapshot
// then carries the spooled segments as commitlog/<name>, so a restore to
// a time finds them in the repository (docs/cassandra-pitr.md).

// commitlogPrefix is where a backed-up tree holds the archived segments.
const commitlogPrefix = "commitlog"

// Segment is one archived commit-log segment a backup carries.
type Segment struct {
	Name string `json:"name"`
	// ID is the segment's id (CommitLog-<version>-<id>.log): segments are
	// written, and replayed, in the order of their ids.
	ID int64 `json:"id"`
	// ClosedAt is the file's mtime: its last write, when Cassandra
	// closed it.
	ClosedAt time.Time `json:"closed_at"`
	Size     int64     `json:"size"`
}

// ParseSegmentName reads a segment's id from its name,
// CommitLog-<version>-<id>.log.
func ParseSegmentName(name string) (int64, error) {
	rest, ok := strings.CutPrefix(name, "CommitLog-")
	if ok {
		rest, ok = strings.CutSuffix(rest, ".log")
	}
	version, id, ok2 := strings.Cut(rest, "-")
	if !ok || !ok2 {
		return 0, fmt.Errorf("%q is not a commit-log segment name (CommitLog-<version>-<id>.log)", name)
	}
	if _, err := strconv.ParseUint(version, 10, 16); err != nil {
		return 0, fmt.Errorf("commit-log segment %q: version %q is not a number", name, version)
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("commit-log segment %q: id %q is not a number", name, id)
	}
	return n, nil
}

// ErrArchive marks a segment that could not be archived.
var ErrArchive = errors.New("cannot archive commit-log segment")

// ArchiveSegment puts the closed segment path into spool as name: a hard
// link (a copy keeping the mtime across file systems) under a temp name,
// renamed into place, and the directory synced, so the spool never
// holds a partial segment. A segment already there is kept (Cassandra
// archives again the segments it finds at start-up). It is what
// `crayfish cassandra-archive-segment` runs for Cassandra, which waits
// for it before it deletes the segment: it must be quick.
func ArchiveSegment(spool, path, name string) error {
	if _, err := ParseSegmentName(name); err != nil || filepath.Base(name) != name {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	src, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	if !src.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrArchive, path)
	}
	if err := os.MkdirAll(spool, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	dst := filepath.Join(spool, name)
	if have, err := os.Stat(dst); err == nil && (os.SameFile(have, src) || have.Size() == src.Size()) {
		return nil // archived before (a repeat, or Cassandra's start-up pass)
	}
	tmp := filepath.Join(spool, "."+name+".tmp")
	_ = os.Remove(tmp)
	if err := os.Link(path, tmp); err != nil {
		if err := copyKeepingTime(path, tmp, src); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("%w: %v", ErrArchive, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	return syncDir(spool)
}

// copyKeepingTime copies src to a new dst, synced, with src's mtime (a
// segment's mtime is when it closed).
func copyKeepingTime(src, dst string, info fs.FileInfo) error {
	if err := copyFile(src, dst); err != nil {
		return err
	}
	return os.Chtimes(dst, info.ModTime(), info.ModTime())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// spooledSegments lists the segments in spool (temp files of an archive
// in progress left out), oldest id first.
func spooledSegments(spool string) ([]Segment, error) {
	entries, err := os.ReadDir(spool)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []Segment
	for _, e := range entries {
		id, err := ParseSegmentName(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, Segment{Name: e.Name(), ID: id, ClosedAt: info.ModTime().UTC(), Size: info.Size()})
	}
	slices.SortFunc(out, func(a, b Segment) int { return compareSegments(a, b) })
	return out, nil
}

func compareSegments(a, b Segment) int {
	if c := a.ClosedAt.Compare(b.ClosedAt); c != 0 {
		return c
	}
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// linkSegments prunes from the spool the segments closed before
// now-keep, then hard-links the others into dir/commitlog/ and lists
// them: what the backup carries.
func (p *Plugin) linkSegments(dir string, now time.Time) ([]Segment, error) {
	spool := p.cfg.SpoolDir
	segs, err := spooledSegments(spool)
	if err != nil {
		return nil, fmt.Errorf("commit-log spool: %w", err)
	}
	var kept []Segment
	for _, s := range segs {
		if p.cfg.CommitlogKeep > 0 && s.ClosedAt.Before(now.Add(-p.cfg.CommitlogKeep)) {
			if err := os.Remove(filepath.Join(spool, s.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			continue
		}
		kept = append(kept, s)
	}
	if len(kept) == 0 {
		return nil, nil
	}
	dst := filepath.Join(dir, commitlogPrefix)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	for _, s := range kept {
		if err := linkOrCopy(filepath.Join(spool, s.Name), filepath.Join(dst, s.Name)); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("link spooled segment %s: %w", s.Name, err)
		}
	}
	return kept, nil
}

// retireSpool moves the spool's segments aside, into
// <spool>.retired/<time>/: a node put back by a full restore starts a new
// history, and the old one's segments must not ride into its backups;
// but those closed after the last backup are in no backup, and a restore
// destroys nothing it was not asked to replace. A repeat finds the spool
// empty.
func (p *Plugin) retireSpool() error {
	if p.cfg.SpoolDir == "" {
		return nil
	}
	entries, err := os.ReadDir(p.cfg.SpoolDir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	retired := filepath.Join(p.cfg.SpoolDir+".retired", time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.MkdirAll(filepath.Dir(retired), 0o755); err != nil {
		return err
	}
	if err := os.Rename(p.cfg.SpoolDir, retired); err != nil {
		return err
	}
	p.log.Warn("the commit-log spool of the history before this restore was moved aside; delete it once it is not needed",
		"dir", retired, "segments", len(entries))
	return os.MkdirAll(p.cfg.SpoolDir, 0o755)
}
