package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

const (
	// MaxManifestSize caps a manifest's JSON (decompressed): readers refuse
	// larger ones, so a hostile object cannot exhaust memory.
	MaxManifestSize = 4 << 30
	// MaxFileSize is the largest file size a manifest may claim (1 PiB).
	MaxFileSize = 1 << 50
)

func manifestKey(backupID string) string { return manifestPrefix + backupID }

// PutManifest validates m and stores it, committing the backup. It never
// replaces a manifest: if one with this backup id exists and is
// byte-identical (a retried commit) it returns nil, otherwise ErrExists.
func (r *Repository) PutManifest(ctx context.Context, m *Manifest) error {
	if err := ValidateManifest(m); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", m.BackupID, err)
	}
	if len(data) > MaxManifestSize {
		return fmt.Errorf("put manifest %s: %d bytes of JSON, more than readers accept (%d): %w",
			m.BackupID, len(data), MaxManifestSize, ErrInvalidManifest)
	}
	packed := manifestEncoder().EncodeAll(data, nil)
	key := manifestKey(m.BackupID)
	_, err = r.write(ctx, key, true, func(w io.Writer) error {
		_, err := w.Write(packed)
		return err
	})
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		existing, rerr := r.readManifestJSON(ctx, key)
		switch {
		case rerr != nil:
			return fmt.Errorf("put manifest %s: one exists and cannot be read (%v): %w", m.BackupID, rerr, ErrExists)
		case !bytes.Equal(existing, data):
			return fmt.Errorf("put manifest %s: a different manifest exists: %w", m.BackupID, ErrExists)
		}
		return nil // identical: an idempotent retry
	}
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", m.BackupID, err)
	}
	return nil
}

// GetManifest reads and validates the manifest of backupID. An unknown (or
// impossible) id gives ErrNotFound; content that does not decode or validate
// gives ErrInvalidManifest saying what is wrong.
func (r *Repository) GetManifest(ctx context.Context, backupID string) (*Manifest, error) {
	if !ValidBackupID(backupID) {
		return nil, fmt.Errorf("get manifest %q: invalid backup id: %w", backupID, ErrNotFound)
	}
	data, err := r.readManifestJSON(ctx, manifestKey(backupID))
	if err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", backupID, err)
	}
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("get manifest %s: %w: bad JSON: %v", backupID, ErrInvalidManifest, err)
	}
	if err := ValidateManifest(m); err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", backupID, err)
	}
	if m.BackupID != backupID {
		return nil, fmt.Errorf("get manifest %s: %w: stored under this id but names backup %q",
			backupID, ErrInvalidManifest, m.BackupID)
	}
	return m, nil
}

// readManifestJSON returns the decompressed JSON stored at key, at most
// MaxManifestSize bytes.
func (r *Repository) readManifestJSON(ctx context.Context, key string) ([]byte, error) {
	rd, err := r.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, translate(err)
	}
	defer rd.Close()
	src := &trackingReader{r: rd}
	dec, err := getDecoder(src)
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrInvalidManifest, err)
	}
	data, err := io.ReadAll(&limitReader{r: dec, n: MaxManifestSize})
	putDecoder(dec)
	switch {
	case src.err != nil:
		return nil, translate(src.err)
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("%w: decompresses to more than %d bytes", ErrInvalidManifest, MaxManifestSize)
	case err != nil:
		return nil, fmt.Errorf("%w: zstd: %v", ErrInvalidManifest, err)
	}
	return data, nil
}

// ListBackupIDs returns the id of every stored manifest in ascending lexical
// order (backup ids are time-sortable). It reads only the key listing; keys
// that are not valid backup ids (such as the file:// driver's temporary
// files) are skipped.
func (r *Repository) ListBackupIDs(ctx context.Context) ([]string, error) {
	ids := []string{}
	it := r.bucket.List(&blob.ListOptions{Prefix: manifestPrefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list manifests: %w", translate(err))
		}
		id := strings.TrimPrefix(obj.Key, manifestPrefix)
		if !obj.IsDir && ValidBackupID(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids) // drivers list in key order, but that is not a contract
	return ids, nil
}

// DeleteManifest removes the manifest of backupID (the backup then no longer
// exists; its objects stay until garbage collection). ErrNotFound if absent.
func (r *Repository) DeleteManifest(ctx context.Context, backupID string) error {
	if !ValidBackupID(backupID) {
		return fmt.Errorf("delete manifest %q: invalid backup id: %w", backupID, ErrNotFound)
	}
	key := manifestKey(backupID)
	// Some stores (S3) report success when deleting a missing key.
	ok, err := r.bucket.Exists(ctx, key)
	if err == nil && !ok {
		err = ErrNotFound
	}
	if err == nil {
		err = translate(r.bucket.Delete(ctx, key))
	}
	if err != nil {
		return fmt.Errorf("delete manifest %s: %w", backupID, err)
	}
	return nil
}

// ValidateManifest checks m as hostile input; writers call it before storing
// and readers after decoding. The error wraps ErrInvalidManifest and says
// what is wrong (the first problem found).
func ValidateManifest(m *Manifest) error {
	if m == nil {
		return fmt.Errorf("%w: nil manifest", ErrInvalidManifest)
	}
	if m.FormatVersion != ManifestFormatVersion {
		return fmt.Errorf("%w: format_version %d, this build reads %d",
			ErrInvalidManifest, m.FormatVersion, ManifestFormatVersion)
	}
	if !ValidBackupID(m.BackupID) {
		return fmt.Errorf("%w: invalid backup id %q", ErrInvalidManifest, m.BackupID)
	}
	nodes := make(map[string]bool, len(m.Nodes))
	for i := range m.Nodes {
		n := &m.Nodes[i]
		if n.NodeID == "" {
			return fmt.Errorf("%w: node %d has an empty node id", ErrInvalidManifest, i)
		}
		if nodes[n.NodeID] {
			return fmt.Errorf("%w: node id %q appears twice", ErrInvalidManifest, n.NodeID)
		}
		nodes[n.NodeID] = true
		if err := validateNode(n); err != nil {
			return fmt.Errorf("%w: node %q: %v", ErrInvalidManifest, n.NodeID, err)
		}
	}
	return nil
}

func validateNode(n *NodeManifest) error {
	s := n.Stats
	if s.Files < 0 || s.Dirs < 0 || s.Symlinks < 0 || s.Bytes < 0 ||
		s.UploadedFiles < 0 || s.UploadedBytes < 0 || s.StoredBytes < 0 {
		return errors.New("negative stats")
	}
	types := make(map[string]EntryType, len(n.Files))
	for i := range n.Files {
		e := &n.Files[i]
		if err := validateEntry(e); err != nil {
			return fmt.Errorf("entry %d (%q): %v", i, e.Path, err)
		}
		if _, dup := types[e.Path]; dup {
			return fmt.Errorf("entry %d (%q): path appears twice", i, e.Path)
		}
		types[e.Path] = e.Type
	}
	// Parents need not be listed, but a listed parent must be a directory:
	// otherwise a restore could write through a symlink ("a" -> "/etc",
	// then "a/passwd") or into a regular file.
	for i := range n.Files {
		p := n.Files[i].Path
		for j := strings.LastIndexByte(p, '/'); j > 0; j = strings.LastIndexByte(p[:j], '/') {
			if t, ok := types[p[:j]]; ok && t != TypeDir {
				return fmt.Errorf("entry %d (%q): parent %q is a %s, not a dir", i, p, p[:j], t)
			}
		}
	}
	return nil
}

func validateEntry(e *FileEntry) error {
	if err := validatePath(e.Path); err != nil {
		return err
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("mode %#o has bits outside 0o7777", e.Mode)
	}
	if e.Size < 0 || e.Size > MaxFileSize {
		return fmt.Errorf("size %d outside [0, %d]", e.Size, int64(MaxFileSize))
	}
	switch e.Type {
	case TypeFile:
		if e.Size > 0 && e.Content.IsZero() {
			return errors.New("non-empty file without content")
		}
		if e.Size == 0 && !e.Content.IsZero() {
			return errors.New("empty file with content (must be zero)")
		}
	case TypeDir, TypeSymlink:
		if e.Size != 0 || !e.Content.IsZero() {
			return fmt.Errorf("%s with size or content", e.Type)
		}
	default:
		return fmt.Errorf("unknown type %q", e.Type)
	}
	if e.Type == TypeSymlink {
		if e.LinkTarget == "" {
			return errors.New("symlink without target")
		}
		if strings.IndexByte(e.LinkTarget, 0) >= 0 {
			return errors.New("symlink target contains NUL")
		}
	} else if e.LinkTarget != "" {
		return fmt.Errorf("%s with a link target", e.Type)
	}
	return nil
}

// validatePath accepts only clean, relative, slash-separated paths that stay
// inside the tree root.
func validatePath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty path")
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("path contains NUL")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	case path.Clean(p) != p:
		return errors.New("path is not clean")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return errors.New(`path has a ".." element`)
		}
	}
	return nil
}
