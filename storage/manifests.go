package storage

// A backup's manifest (Manifest: its nodes, their file-list trees, stats
// and plugin metadata) is the object snapshots/<backup id>; "snapshot"
// there is the repository format's name, kept for compatibility
// (docs/repository-format.md). In code the object is the manifest, and
// "snapshot" means what a node takes of its tree or database.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// Snapshot object layout: a 16-byte plaintext header, then the sealed,
// zstd-compressed JSON of the Manifest without file lists.
const (
	snapshotMagic      = "CFSN"
	snapshotHeaderSize = header.Size
	snapshotAADTag     = "crayfish/v1/snapshot/"
	// maxSnapshotJSON caps a snapshot's decompressed JSON: it holds only
	// per-node summaries and tree blob ids.
	maxSnapshotJSON = 64 << 20
	// treeBlobTarget is the size at which a file list is cut into a new
	// meta blob (at an entry boundary).
	treeBlobTarget = 1 << 20
)

var (
	// A 1 MiB window: file lists repeat their paths nearby, and the
	// default window's history held 16 MiB for the agent's lifetime.
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxSnapshotJSON), zstd.WithDecoderConcurrency(1))
)

func snapshotKey(backupID string) string { return snapshotPrefix + backupID }

func (r *Repository) snapshotHeader() []byte { return header.New(snapshotMagic, r.cfg.Encrypted()) }

func snapshotAAD(h []byte, backupID string) []byte { return header.AAD(h, snapshotAADTag, backupID) }

// SaveFiles stores a node's file list as meta blobs (JSON lines, cut at
// about 1 MiB) and returns their ids in order. Flush makes them durable.
func (r *Repository) SaveFiles(ctx context.Context, files []FileEntry) ([]ObjectID, error) {
	var (
		tree []ObjectID
		buf  []byte
	)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		data := bytes.Clone(buf)
		id := ObjectID(sha256.Sum256(data))
		if _, err := r.SaveBlob(ctx, BlobMeta, id, data); err != nil {
			return err
		}
		tree = append(tree, id)
		buf = buf[:0]
		return nil
	}
	for i := range files {
		var err error
		if buf, err = files[i].AppendJSON(buf); err != nil {
			return nil, err
		}
		buf = append(buf, '\n')
		if len(buf) >= treeBlobTarget {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return tree, nil
}

// LoadFiles loads and validates the file list of one node of a snapshot.
func (r *Repository) LoadFiles(ctx context.Context, n *NodeManifest) ([]FileEntry, error) {
	files := make([]FileEntry, 0, min(n.Entries, 1<<20))
	for _, id := range n.Tree {
		data, err := r.LoadBlob(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("file list of node %s: %w", n.NodeID, err)
		}
		if files, err = appendFileList(files, data, n.Entries); err != nil {
			return nil, fmt.Errorf("file list of node %s, blob %s: %w", n.NodeID, id, err)
		}
	}
	if int64(len(files)) != n.Entries {
		return nil, fmt.Errorf("file list of node %s: %d entries, the snapshot announces %d: %w", n.NodeID, len(files), n.Entries, ErrInvalidManifest)
	}
	if err := ValidateEntries(files); err != nil {
		return nil, fmt.Errorf("%w: node %q: %v", ErrInvalidManifest, n.NodeID, err)
	}
	return files, nil
}

// appendFileList parses one file-list blob (JSON lines of FileEntry) onto
// files, refusing more than max entries in all. Blob content is untrusted.
func appendFileList(files []FileEntry, data []byte, max int64) ([]FileEntry, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), pack.MaxBlobSize) // a line never exceeds its blob
	for sc.Scan() {
		var e FileEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return files, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
		}
		files = append(files, e)
		if int64(len(files)) > max {
			return files, fmt.Errorf("%w: more than the %d entries the snapshot announces", ErrInvalidManifest, max)
		}
	}
	if err := sc.Err(); err != nil {
		return files, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	return files, nil
}

// decodeSnapshotJSON parses and validates the plaintext JSON of the
// snapshot stored under backupID. It is untrusted input.
func decodeSnapshotJSON(plain []byte, backupID string) (*Manifest, error) {
	m := new(Manifest)
	if err := json.Unmarshal(plain, m); err != nil {
		return nil, fmt.Errorf("%w: bad JSON: %v", ErrInvalidManifest, err)
	}
	if m.BackupID != backupID {
		return nil, fmt.Errorf("%w: names backup %q", ErrInvalidManifest, m.BackupID)
	}
	if err := ValidateManifest(m); err != nil {
		return nil, err
	}
	for _, n := range m.Nodes {
		if n.Files != nil {
			return nil, fmt.Errorf("%w: node %q: a snapshot object carries no file list", ErrInvalidManifest, n.NodeID)
		}
	}
	return m, nil
}

// PutManifest commits a backup: it writes the manifest object of m (whose
// nodes' Tree blobs must already be flushed). It never replaces one: if a
// manifest with this id exists and says the same (a retried commit) it
// returns nil, otherwise ErrExists.
func (r *Repository) PutManifest(ctx context.Context, m *Manifest) error {
	m = stripFiles(m)
	if err := ValidateManifest(m); err != nil {
		return fmt.Errorf("put snapshot: %w", err)
	}
	for _, n := range m.Nodes {
		if err := r.requireFlushed(ctx, n.Tree); err != nil {
			return fmt.Errorf("put snapshot %s: node %s: %w", m.BackupID, n.NodeID, err)
		}
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return err
	}
	header := r.snapshotHeader()
	data := r.snapCi.Seal(header, zenc.EncodeAll(plain, nil), snapshotAAD(header, m.BackupID))
	err = r.be.Put(ctx, snapshotKey(m.BackupID), data, true)
	if errors.Is(err, backend.ErrExists) {
		existing, gerr := r.GetManifest(ctx, m.BackupID)
		if gerr != nil {
			return fmt.Errorf("put snapshot %s: one exists and cannot be read (%v): %w", m.BackupID, gerr, ErrExists)
		}
		if b, _ := json.Marshal(existing); !bytes.Equal(b, plain) {
			return fmt.Errorf("put snapshot %s: a different snapshot exists: %w", m.BackupID, ErrExists)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("put snapshot %s: %w", m.BackupID, err)
	}
	return nil
}

// flushed reports whether blob id is listed by a written index segment
// (not merely saved by this process).
func (r *Repository) flushed(id ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, pending := r.pending[id]; pending {
		return false
	}
	loc, ok := r.idx.Lookup(id)
	if !ok {
		return false
	}
	for _, sp := range r.session {
		if sp.id == ObjectID(loc.Pack) {
			return false
		}
	}
	return true
}

func stripFiles(m *Manifest) *Manifest {
	c := *m
	c.Nodes = make([]NodeManifest, len(m.Nodes))
	for i, n := range m.Nodes {
		n.Files = nil
		c.Nodes[i] = n
	}
	return &c
}

// GetManifest reads and validates the manifest of backupID, without the
// nodes' file lists (cheap: this is what listing reads).
func (r *Repository) GetManifest(ctx context.Context, backupID string) (*Manifest, error) {
	if !ValidBackupID(backupID) {
		return nil, fmt.Errorf("snapshot %q: invalid backup id: %w", backupID, ErrNotFound)
	}
	data, err := r.be.Get(ctx, snapshotKey(backupID))
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("backup %s: %w", backupID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", backupID, err)
	}
	plain, err := r.openSealed(data, snapshotMagic, snapshotAADTag, backupID)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", backupID, err)
	}
	m, err := decodeSnapshotJSON(plain, backupID)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", backupID, err)
	}
	return m, nil
}

// openSealed checks the header of a sealed JSON object (a snapshot or a
// log archive: magic, version, flags, encryption) and returns its JSON,
// authenticated against id and decompressed within maxSnapshotJSON.
func (r *Repository) openSealed(data []byte, magic, aadTag, id string) ([]byte, error) {
	if len(data) < snapshotHeaderSize || string(data[:4]) != magic {
		return nil, fmt.Errorf("bad header: %w", ErrCorrupt)
	}
	if data[4] != 1 {
		return nil, fmt.Errorf("object version %d: %w", data[4], ErrUnsupportedVersion)
	}
	h := data[:snapshotHeaderSize]
	if h[5]&^1 != 0 || !bytes.Equal(h[6:], make([]byte, snapshotHeaderSize-6)) {
		return nil, fmt.Errorf("unknown flags or reserved bytes set: %w", ErrUnsupportedVersion)
	}
	if (h[5]&1 == 1) != r.cfg.Encrypted() {
		return nil, fmt.Errorf("encryption flag disagrees with the repository: %w", ErrCorrupt)
	}
	compressed, err := r.snapCi.Open(nil, data[snapshotHeaderSize:], header.AAD(h, aadTag, id))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	plain, err := zdec.DecodeAll(compressed, nil)
	if err != nil || len(plain) > maxSnapshotJSON {
		return nil, fmt.Errorf("%w: does not decompress (%v)", ErrCorrupt, err)
	}
	return plain, nil
}

// GetManifestWithFiles reads a manifest with every node's file list.
func (r *Repository) GetManifestWithFiles(ctx context.Context, backupID string) (*Manifest, error) {
	m, err := r.GetManifest(ctx, backupID)
	if err != nil {
		return nil, err
	}
	for i := range m.Nodes {
		if m.Nodes[i].Files, err = r.LoadFiles(ctx, &m.Nodes[i]); err != nil {
			return nil, fmt.Errorf("backup %s: %w", backupID, err)
		}
	}
	return m, nil
}

// ListBackupIDs returns every backup id, ascending (ids sort by start time).
// It reads only the key listing.
func (r *Repository) ListBackupIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.be.List(ctx, snapshotPrefix, func(oi backend.ObjectInfo) error {
		if id := strings.TrimPrefix(oi.Key, snapshotPrefix); ValidBackupID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// DeleteManifest removes a backup's manifest. Its blobs stay until garbage
// collection finds them unreferenced.
func (r *Repository) DeleteManifest(ctx context.Context, backupID string) error {
	if !ValidBackupID(backupID) {
		return fmt.Errorf("delete backup %q: invalid id: %w", backupID, ErrNotFound)
	}
	err := r.be.Delete(ctx, snapshotKey(backupID))
	if errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete backup %s: %w", backupID, ErrNotFound)
	}
	return err
}
