package fileset

import (
	"strconv"
	"strings"
)

// The top-level directories of an M3DB filePathPrefix (M3 v1.5.0,
// src/dbnode/persist/fs/files.go).
const (
	dataDir      = "data"
	snapshotsDir = "snapshots"
	indexDir     = "index"
	commitLogDir = "commitlogs"
)

// Data and snapshot fileset suffixes, in the order of the digest file's
// five adler32s; then the digest and the checkpoint.
var dataSuffixes = []string{"info", "index", "summaries", "bloomfilter", "data"}

const (
	infoSuffix       = "info"
	digestSuffix     = "digest"
	checkpointSuffix = "checkpoint"
	segmentPrefix    = "segment-"
)

// filesetName is a parsed fileset file name:
// fileset-<blockStart>-<volume>-<suffix>.db, or the legacy
// fileset-<blockStart>-<suffix>.db without a volume.
type filesetName struct {
	blockStart int64
	volume     int
	legacy     bool
	suffix     string
}

// parseFilesetName parses a fileset file name; ok is false for anything
// else.
func parseFilesetName(name string) (n filesetName, ok bool) {
	rest, found := strings.CutPrefix(name, "fileset-")
	if !found {
		return n, false
	}
	rest, found = strings.CutSuffix(rest, ".db")
	if !found {
		return n, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 {
		return n, false
	}
	t, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !isDigits(parts[0]) {
		return n, false
	}
	n.blockStart = t
	if len(parts) >= 3 && isDigits(parts[1]) {
		v, err := strconv.Atoi(parts[1])
		if err != nil {
			return n, false
		}
		n.volume = v
		n.suffix = strings.Join(parts[2:], "-")
	} else {
		n.legacy = true
		n.suffix = strings.Join(parts[1:], "-")
	}
	return n, n.suffix != ""
}

// prefix is the file name prefix shared by the fileset's files.
func (n filesetName) prefix() string {
	if n.legacy {
		return "fileset-" + strconv.FormatInt(n.blockStart, 10)
	}
	return "fileset-" + strconv.FormatInt(n.blockStart, 10) + "-" + strconv.Itoa(n.volume)
}

// fileName is the name of the fileset's file with this suffix.
func (n filesetName) fileName(suffix string) string {
	return n.prefix() + "-" + suffix + ".db"
}

// isDataSuffix reports whether s names a file of a data or snapshot fileset.
func isDataSuffix(s string) bool {
	switch s {
	case digestSuffix, checkpointSuffix:
		return true
	}
	for _, d := range dataSuffixes {
		if s == d {
			return true
		}
	}
	return false
}

// isIndexSuffix reports whether s names a file of an index fileset: info,
// digest, checkpoint or segment-<n>-<type>.
func isIndexSuffix(s string) bool {
	switch s {
	case infoSuffix, digestSuffix, checkpointSuffix:
		return true
	}
	rest, ok := strings.CutPrefix(s, segmentPrefix)
	if !ok {
		return false
	}
	idx, typ, ok := strings.Cut(rest, "-")
	return ok && isDigits(idx) && typ != ""
}

// segmentSuffix is an index fileset's suffix for a segment file.
func segmentSuffix(segment int, fileType string) string {
	return segmentPrefix + strconv.Itoa(segment) + "-" + fileType
}

// snapshotMetadataName is a parsed snapshot metadata file name:
// snapshot-<uuid without dashes>-<index>-metadata.db, or its checkpoint
// snapshot-<uuid>-<index>-metadata-checkpoint.db.
type snapshotMetadataName struct {
	id         string
	index      int
	checkpoint bool
}

func parseSnapshotMetadataName(name string) (n snapshotMetadataName, ok bool) {
	rest, found := strings.CutPrefix(name, "snapshot-")
	if !found {
		return n, false
	}
	if r, found := strings.CutSuffix(rest, "-metadata-checkpoint.db"); found {
		rest, n.checkpoint = r, true
	} else if r, found := strings.CutSuffix(rest, "-metadata.db"); found {
		rest = r
	} else {
		return n, false
	}
	id, idx, found := strings.Cut(rest, "-")
	if !found || id == "" || !isDigits(idx) {
		return n, false
	}
	i, err := strconv.Atoi(idx)
	if err != nil {
		return n, false
	}
	n.id, n.index = id, i
	return n, true
}

func (n snapshotMetadataName) metadataFile() string {
	return "snapshot-" + n.id + "-" + strconv.Itoa(n.index) + "-metadata.db"
}

func (n snapshotMetadataName) checkpointFile() string {
	return "snapshot-" + n.id + "-" + strconv.Itoa(n.index) + "-metadata-checkpoint.db"
}

// parseCommitLogName parses commitlog-0-<index>.db (M3 v1.5.0 always
// writes 0 as the first number; any number is accepted).
func parseCommitLogName(name string) (index int, ok bool) {
	rest, found := strings.CutPrefix(name, "commitlog-")
	if !found {
		return 0, false
	}
	rest, found = strings.CutSuffix(rest, ".db")
	if !found {
		return 0, false
	}
	first, idx, found := strings.Cut(rest, "-")
	if !found || !isDigits(first) || !isDigits(idx) {
		return 0, false
	}
	i, err := strconv.Atoi(idx)
	if err != nil {
		return 0, false
	}
	return i, true
}

// parseShard parses a shard directory name.
func parseShard(s string) (uint32, bool) {
	if !isDigits(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
