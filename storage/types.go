package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; the HTTP layer
// translates them once into status codes.
var (
	// ErrNotFound: the object, manifest or repository does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrCorrupt: stored bytes do not match their content address or do not decode.
	ErrCorrupt = errors.New("storage: corrupt object")
	// ErrUnsupportedVersion: the repository was written by a newer, incompatible format.
	ErrUnsupportedVersion = errors.New("storage: unsupported repository format version")
	// ErrNotInitialized: the URL holds no repository config and Create was not requested.
	ErrNotInitialized = errors.New("storage: repository not initialized")
	// ErrInvalidManifest: a manifest failed validation (hostile or damaged input).
	ErrInvalidManifest = errors.New("storage: invalid manifest")
	// ErrExists: a manifest with this backup id already exists with different content.
	ErrExists = errors.New("storage: already exists")
)

// ObjectID is the content address of a stored object: SHA-256 of its plaintext.
type ObjectID [sha256.Size]byte

// HashBytes returns the ObjectID of b.
func HashBytes(b []byte) ObjectID { return sha256.Sum256(b) }

func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero value (no content).
func (id ObjectID) IsZero() bool { return id == ObjectID{} }

// ParseObjectID parses a 64-character lowercase hex string.
func ParseObjectID(s string) (ObjectID, error) {
	var id ObjectID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("object id %q: want %d hex characters", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("object id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText encodes the id as hex so manifests stay readable JSON.
func (id ObjectID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a hex id.
func (id *ObjectID) UnmarshalText(b []byte) error {
	v, err := ParseObjectID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// EntryType is the kind of a file tree entry.
type EntryType string

const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
)

// FileEntry describes one entry of a backed-up tree. Path is slash-separated
// and relative to the tree root; it never starts with "/" and has no ".." element.
type FileEntry struct {
	Path  string    `json:"path"`
	Type  EntryType `json:"type"`
	Size  int64     `json:"size,omitempty"`
	Mode  uint32    `json:"mode"`  // permission bits (0o7777 mask of os.FileMode)
	MTime time.Time `json:"mtime"` // nanosecond precision
	// Content is the SHA-256 of the whole file. Zero for dirs, symlinks and empty files.
	Content ObjectID `json:"content,omitzero"`
	// Chunks are the ids (SHA-256) of the file's consecutive ChunkSize-byte
	// pieces, the last one shorter; a file of at most ChunkSize bytes has one
	// chunk whose id equals Content. Empty for empty files and non-files.
	Chunks     []ObjectID `json:"chunks,omitempty"`
	LinkTarget string     `json:"link_target,omitempty"`
	// UID and GID are the numeric owner, recorded when the agent runs as
	// root (only root can give files back to their owners on restore).
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
}

// ChunkSize is the fixed size of file chunks (docs/repository-format.md
// explains the choice): immutable database files gain nothing from
// content-defined chunking, and fixed offsets still deduplicate appended
// files' unchanged prefix.
const ChunkSize = 4 << 20

// NumChunks is how many chunks a file of size bytes has.
func NumChunks(size int64) int64 { return (size + ChunkSize - 1) / ChunkSize }

// BlobType separates file content from metadata, which live in different packs.
type BlobType uint8

const (
	BlobData BlobType = 0 // file content chunks
	BlobMeta BlobType = 1 // file lists and other metadata
)

// NodeStats are per-node numbers of one backup.
type NodeStats struct {
	Files         int64 `json:"files"`
	Dirs          int64 `json:"dirs"`
	Symlinks      int64 `json:"symlinks"`
	Bytes         int64 `json:"bytes"`          // logical bytes of regular files
	UploadedFiles int64 `json:"uploaded_files"` // objects this backup had to upload
	UploadedBytes int64 `json:"uploaded_bytes"` // logical bytes of those objects
	StoredBytes   int64 `json:"stored_bytes"`   // bytes written to the repository (compressed)
}

// NodeManifest is one node's part of a backup. The snapshot object holds
// Tree (the meta blobs of the file list) and Entries; Files is filled only
// when the file list is loaded.
type NodeManifest struct {
	NodeID string `json:"node_id"`
	// Zone is the node's availability zone, when configured: a restore
	// onto other nodes matches zones.
	Zone    string      `json:"zone,omitempty"`
	Stats   NodeStats   `json:"stats"`
	Entries int64       `json:"entries"`
	Tree    []ObjectID  `json:"tree"`
	Files   []FileEntry `json:"files,omitempty"`
	// Plugin is the database plugin's record of the node (for Cassandra:
	// host id, data center, rack, tokens, schema version, tables).
	Plugin json.RawMessage `json:"plugin_meta,omitempty"`
}

// ManifestFormatVersion is the snapshot schema version written by this code.
const ManifestFormatVersion = 1

// Manifest is the commit record of one backup (the snapshot object). Its
// presence in the repository is what makes the backup exist.
type Manifest struct {
	FormatVersion int            `json:"format_version"`
	BackupID      string         `json:"backup_id"`
	OperationID   string         `json:"operation_id"`
	Epoch         uint64         `json:"epoch"`
	Plugin        string         `json:"plugin"`
	StartedAt     time.Time      `json:"started_at"`
	FinishedAt    time.Time      `json:"finished_at"`
	Nodes         []NodeManifest `json:"nodes"`
}

// Summary is what listing shows about a backup.
type Summary struct {
	BackupID    string    `json:"backup_id"`
	OperationID string    `json:"operation_id"`
	Plugin      string    `json:"plugin"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Nodes       []string  `json:"nodes"`
	Stats       NodeStats `json:"stats"` // summed over nodes
}

// Summarize derives the listing view of m.
func (m *Manifest) Summarize() Summary {
	s := Summary{BackupID: m.BackupID, OperationID: m.OperationID, Plugin: m.Plugin,
		StartedAt: m.StartedAt, FinishedAt: m.FinishedAt}
	for _, n := range m.Nodes {
		s.Nodes = append(s.Nodes, n.NodeID)
		s.Stats.Files += n.Stats.Files
		s.Stats.Dirs += n.Stats.Dirs
		s.Stats.Symlinks += n.Stats.Symlinks
		s.Stats.Bytes += n.Stats.Bytes
		s.Stats.UploadedFiles += n.Stats.UploadedFiles
		s.Stats.UploadedBytes += n.Stats.UploadedBytes
		s.Stats.StoredBytes += n.Stats.StoredBytes
	}
	return s
}

var backupIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// reservedKeySuffixes may not end a backup id: the file:// driver uses them
// for its temporary files (name.<hex>.tmp, written next to the target) and
// metadata sidecars (name.attrs), so such a key could never be listed or
// written reliably.
var reservedKeySuffixes = []string{".tmp", ".attrs"}

// ValidBackupID reports whether id may name a backup (it becomes part of an object key).
func ValidBackupID(id string) bool {
	if strings.Contains(id, "__0x") { // reserved by the object-store layer
		return false
	}
	if !backupIDPattern.MatchString(id) {
		return false
	}
	for _, s := range reservedKeySuffixes {
		if strings.HasSuffix(id, s) {
			return false
		}
	}
	return true
}
