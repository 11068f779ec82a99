package storage

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

const (
	// MaxChunksPerFile bounds a file's chunk list, which is stored inline
	// in one file-list line that must fit in one blob.
	MaxChunksPerFile = 100_000
	// MaxFileSize is the largest file format v1 stores (about 390 GiB);
	// larger files are refused with a clear error at backup time.
	MaxFileSize = MaxChunksPerFile * ChunkSize
)

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
		s.UploadedFiles < 0 || s.UploadedBytes < 0 || s.StoredBytes < 0 || n.Entries < 0 {
		return errors.New("negative stats")
	}
	if n.Entries > 0 && len(n.Tree) == 0 {
		return fmt.Errorf("%d entries but no tree blobs", n.Entries)
	}
	if n.Files != nil && int64(len(n.Files)) != n.Entries {
		return fmt.Errorf("%d entries listed, %d loaded", n.Entries, len(n.Files))
	}
	return ValidateEntries(n.Files)
}

// ValidateEntries checks one node's file list as hostile input: the error
// says which entry is wrong and why.
func ValidateEntries(files []FileEntry) error {
	types := make(map[string]EntryType, len(files))
	for i := range files {
		e := &files[i]
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
	for i := range files {
		p := files[i].Path
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
	if e.Type == TypeFile {
		if n := int64(len(e.Chunks)); n != NumChunks(e.Size) {
			return fmt.Errorf("%d chunks for %d bytes, want %d", n, e.Size, NumChunks(e.Size))
		}
		if e.Size > 0 && e.Size <= ChunkSize && e.Chunks[0] != e.Content {
			return errors.New("single-chunk file whose chunk differs from its content hash")
		}
	} else if len(e.Chunks) != 0 {
		return fmt.Errorf("%s with chunks", e.Type)
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
