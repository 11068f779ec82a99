package fileset

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
)

// Kind says what a Fileset is.
type Kind string

// The kinds of filesets under an M3DB filePathPrefix.
const (
	Data             Kind = "data"              // data/<ns>/<shard>/fileset-*
	Snapshot         Kind = "snapshot"          // snapshots/<ns>/<shard>/fileset-*
	SnapshotMetadata Kind = "snapshot-metadata" // snapshots/snapshot-<id>-<index>-metadata*.db
	Index            Kind = "index"             // index/data/<ns>/fileset-*
	IndexSnapshot    Kind = "index-snapshot"    // index/snapshots/<ns>/fileset-*
	CommitLog        Kind = "commitlog"         // commitlogs/commitlog-0-<index>.db
)

func (k Kind) rank() int {
	return slices.Index([]Kind{Data, Snapshot, SnapshotMetadata, Index, IndexSnapshot, CommitLog}, k)
}

// Reason says why a fileset is not complete and intact.
type Reason string

// The reasons a fileset is left out.
const (
	// NoCheckpoint: the checkpoint file is missing (M3 writes it last, so the
	// fileset is incomplete: being written, or its writer failed).
	NoCheckpoint Reason = "no checkpoint"
	// CheckpointMismatch: the checkpoint is not 4 bytes, or not the adler32
	// of the digest file.
	CheckpointMismatch Reason = "checkpoint mismatch"
	// MissingFile: a file the fileset needs (its digest file, or one its
	// digest lists) is missing.
	MissingFile Reason = "missing file"
	// DigestMismatch: a listed file's adler32 differs from its digest entry.
	DigestMismatch Reason = "digest mismatch"
	// BadDigest: the digest file matches its checkpoint but cannot be read
	// as a digest (wrong length, or not an IndexDigests protobuf).
	BadDigest Reason = "bad digest file"
	// Unreadable: reading a file failed.
	Unreadable Reason = "unreadable"
)

// Problem is why a fileset is left out. File is the file concerned, as a
// slash-separated path relative to the scanned root.
type Problem struct {
	Reason Reason
	File   string
	Detail string
}

func (p *Problem) Error() string {
	s := string(p.Reason)
	if p.File != "" {
		s += ": " + p.File
	}
	if p.Detail != "" {
		s += " (" + p.Detail + ")"
	}
	return s
}

// Fileset is one fileset found under the root, or one snapshot metadata
// file with its checkpoint, or one commit log.
type Fileset struct {
	Kind      Kind
	Namespace string // data, snapshot, index and index-snapshot filesets
	Shard     uint32 // data and snapshot filesets
	// BlockStart is the block start in Unix nanoseconds (data, snapshot,
	// index and index-snapshot filesets).
	BlockStart int64
	// Volume is the volume index; for snapshot metadata and commit logs the
	// index in their names. 0 for legacy filesets.
	Volume int
	// Legacy: the fileset's names carry no volume (fileset-<t>-<suffix>.db,
	// written before M3 had volumes).
	Legacy bool
	// SnapshotID is the snapshot metadata's id (a UUID without dashes).
	SnapshotID string
	// Files are the fileset's files that exist, as slash-separated paths
	// relative to the root, sorted: for an OK fileset exactly the files to
	// take (data: the seven; index: info, digest, checkpoint and every
	// segment file the digest lists).
	Files []string
	// Problem is nil when the fileset is complete and intact.
	Problem *Problem
}

// OK reports whether the fileset is complete and intact. Commit logs have
// no checksums to check and are always OK.
func (f Fileset) OK() bool { return f.Problem == nil }

// String names the fileset, e.g. "data metrics/3 block 1700006400000000000
// volume 0".
func (f Fileset) String() string {
	var s string
	switch f.Kind {
	case Data, Snapshot:
		s = fmt.Sprintf("%s %s/%d block %d", f.Kind, f.Namespace, f.Shard, f.BlockStart)
	case Index, IndexSnapshot:
		s = fmt.Sprintf("%s %s block %d", f.Kind, f.Namespace, f.BlockStart)
	case SnapshotMetadata:
		return fmt.Sprintf("%s %s index %d", f.Kind, f.SnapshotID, f.Volume)
	default:
		return fmt.Sprintf("%s %d", f.Kind, f.Volume)
	}
	if f.Legacy {
		return s + " (legacy, no volume)"
	}
	return s + " volume " + strconv.Itoa(f.Volume)
}

// Report is the result of a Scan.
type Report struct {
	// Filesets, ordered by kind, namespace, shard, block start, volume
	// (legacy first) and snapshot id.
	Filesets []Fileset
	// Other are the files under the root that belong to no fileset (unknown
	// names, unknown directories, index segment files the digest does not
	// list), slash-separated, sorted.
	Other []string
}

// OK returns the complete and intact filesets.
func (r Report) OK() []Fileset {
	return slices.DeleteFunc(slices.Clone(r.Filesets), func(f Fileset) bool { return !f.OK() })
}

// Skipped returns the filesets left out, each with its Problem.
func (r Report) Skipped() []Fileset {
	return slices.DeleteFunc(slices.Clone(r.Filesets), Fileset.OK)
}

// ScanDir scans the M3DB filePathPrefix at root.
func ScanDir(root string) (Report, error) {
	if _, err := os.Stat(root); err != nil {
		return Report{}, err
	}
	return Scan(os.DirFS(root))
}

// Scan walks fsys, the root of an M3DB filePathPrefix, and classifies every
// fileset in it. A missing top-level directory (data, snapshots, index,
// commitlogs) is not an error; failing to list a directory is. A file that
// cannot be read makes its fileset Unreadable.
func Scan(fsys fs.FS) (Report, error) { return ScanVerified(fsys, nil) }

// ScanVerified is Scan that skips reading a data, snapshot or index
// fileset v has seen verified with the same files (see Verified), and
// tells v of every fileset it verifies. v may be nil.
func ScanVerified(fsys fs.FS, v Verified) (Report, error) {
	s := &scanner{fsys: fsys, verified: v}
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return Report{}, err
	}
	for _, e := range top {
		var err error
		switch {
		case e.Name() == dataDir && e.IsDir():
			err = s.shardTree(dataDir, Data)
		case e.Name() == snapshotsDir && e.IsDir():
			err = s.shardTree(snapshotsDir, Snapshot)
		case e.Name() == indexDir && e.IsDir():
			err = s.indexTree()
		case e.Name() == commitLogDir && e.IsDir():
			err = s.commitLogs()
		default:
			err = s.other(e.Name(), e)
		}
		if err != nil {
			return Report{}, err
		}
	}
	slices.SortFunc(s.report.Filesets, compareFilesets)
	slices.Sort(s.report.Other)
	return s.report, nil
}

func compareFilesets(a, b Fileset) int {
	return cmp.Or(
		cmp.Compare(a.Kind.rank(), b.Kind.rank()),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Shard, b.Shard),
		cmp.Compare(a.BlockStart, b.BlockStart),
		compareBool(!a.Legacy, !b.Legacy),
		cmp.Compare(a.Volume, b.Volume),
		cmp.Compare(a.SnapshotID, b.SnapshotID),
	)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

type scanner struct {
	fsys     fs.FS
	report   Report
	verified Verified
}

// other records p (a file, or every file under a directory) as Other.
func (s *scanner) other(p string, e fs.DirEntry) error {
	if !e.IsDir() {
		s.report.Other = append(s.report.Other, p)
		return nil
	}
	return fs.WalkDir(s.fsys, p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			s.report.Other = append(s.report.Other, q)
		}
		return nil
	})
}

// shardTree scans data/ or snapshots/: <ns>/<shard>/fileset-*; in
// snapshots/ also the snapshot metadata files.
func (s *scanner) shardTree(top string, kind Kind) error {
	entries, err := fs.ReadDir(s.fsys, top)
	if err != nil {
		return err
	}
	var metadata []string
	for _, ns := range entries {
		p := path.Join(top, ns.Name())
		if !ns.IsDir() {
			if kind == Snapshot {
				if _, ok := parseSnapshotMetadataName(ns.Name()); ok {
					metadata = append(metadata, ns.Name())
					continue
				}
			}
			s.report.Other = append(s.report.Other, p)
			continue
		}
		shards, err := fs.ReadDir(s.fsys, p)
		if err != nil {
			return err
		}
		for _, sh := range shards {
			q := path.Join(p, sh.Name())
			shard, ok := parseShard(sh.Name())
			if !ok || !sh.IsDir() {
				if err := s.other(q, sh); err != nil {
					return err
				}
				continue
			}
			if err := s.filesetDir(q, kind, ns.Name(), shard); err != nil {
				return err
			}
		}
	}
	if len(metadata) > 0 {
		s.snapshotMetadata(top, metadata)
	}
	return nil
}

// indexTree scans index/data/<ns>/ and index/snapshots/<ns>/.
func (s *scanner) indexTree() error {
	entries, err := fs.ReadDir(s.fsys, indexDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := path.Join(indexDir, e.Name())
		var kind Kind
		switch {
		case e.Name() == dataDir && e.IsDir():
			kind = Index
		case e.Name() == snapshotsDir && e.IsDir():
			kind = IndexSnapshot
		default:
			if err := s.other(p, e); err != nil {
				return err
			}
			continue
		}
		nss, err := fs.ReadDir(s.fsys, p)
		if err != nil {
			return err
		}
		for _, ns := range nss {
			q := path.Join(p, ns.Name())
			if !ns.IsDir() {
				s.report.Other = append(s.report.Other, q)
				continue
			}
			if err := s.filesetDir(q, kind, ns.Name(), 0); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) commitLogs() error {
	entries, err := fs.ReadDir(s.fsys, commitLogDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := path.Join(commitLogDir, e.Name())
		idx, ok := parseCommitLogName(e.Name())
		if !ok || !e.Type().IsRegular() {
			if err := s.other(p, e); err != nil {
				return err
			}
			continue
		}
		s.report.Filesets = append(s.report.Filesets, Fileset{Kind: CommitLog, Volume: idx, Files: []string{p}})
	}
	return nil
}

// group is the files of one fileset in a directory, by suffix.
type group struct {
	name  filesetName
	files map[string]bool
}

// filesetDir groups the fileset files in dir and checks each fileset.
func (s *scanner) filesetDir(dir string, kind Kind, ns string, shard uint32) error {
	entries, err := fs.ReadDir(s.fsys, dir)
	if err != nil {
		return err
	}
	isIndex := kind == Index || kind == IndexSnapshot
	groups := map[string]*group{}
	var order []string
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		n, ok := parseFilesetName(e.Name())
		if ok && isIndex {
			ok = isIndexSuffix(n.suffix)
		} else if ok {
			ok = isDataSuffix(n.suffix)
		}
		if !ok || !e.Type().IsRegular() {
			if err := s.other(p, e); err != nil {
				return err
			}
			continue
		}
		key := n.prefix()
		g := groups[key]
		if g == nil {
			g = &group{name: n, files: map[string]bool{}}
			groups[key] = g
			order = append(order, key)
		}
		g.files[n.suffix] = true
	}
	for _, key := range order {
		g := groups[key]
		f := Fileset{
			Kind: kind, Namespace: ns, Shard: shard,
			BlockStart: g.name.blockStart, Volume: g.name.volume, Legacy: g.name.legacy,
		}
		c := &checker{fsys: s.fsys, dir: dir, name: g.name, present: g.files}
		key := s.verifiedKey(c)
		switch {
		case key != "" && s.verified.Has(key):
			// Verified before with these very files (M3 never rewrites a
			// fileset in place): every present file belongs to it.
		case isIndex:
			f.Problem = c.checkIndex()
		default:
			f.Problem = c.checkData()
		}
		if key != "" && f.Problem == nil && c.whole() {
			s.verified.Add(key)
		}
		f.Files, s.report.Other = c.split(s.report.Other)
		s.report.Filesets = append(s.report.Filesets, f)
	}
	return nil
}

// snapshotMetadata pairs snapshots/snapshot-<id>-<index>-metadata.db with
// its -metadata-checkpoint.db: complete when the checkpoint holds the
// metadata file's adler32.
func (s *scanner) snapshotMetadata(dir string, names []string) {
	type pair struct{ meta, checkpoint bool }
	pairs := map[snapshotMetadataName]*pair{}
	var order []snapshotMetadataName
	for _, name := range names {
		n, _ := parseSnapshotMetadataName(name)
		cp := n.checkpoint
		n.checkpoint = false
		p := pairs[n]
		if p == nil {
			p = &pair{}
			pairs[n] = p
			order = append(order, n)
		}
		if cp {
			p.checkpoint = true
		} else {
			p.meta = true
		}
	}
	for _, n := range order {
		p := pairs[n]
		meta, cp := path.Join(dir, n.metadataFile()), path.Join(dir, n.checkpointFile())
		f := Fileset{Kind: SnapshotMetadata, SnapshotID: n.id, Volume: n.index}
		if p.meta {
			f.Files = append(f.Files, meta)
		}
		if p.checkpoint {
			f.Files = append(f.Files, cp)
		}
		slices.Sort(f.Files)
		switch {
		case !p.checkpoint:
			f.Problem = &Problem{Reason: NoCheckpoint, File: cp}
		case !p.meta:
			f.Problem = &Problem{Reason: MissingFile, File: meta}
		default:
			f.Problem = checkCheckpoint(s.fsys, cp, meta)
		}
		s.report.Filesets = append(s.report.Filesets, f)
	}
}
