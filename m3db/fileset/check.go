package fileset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"path"
	"slices"
)

// checker checks one data, snapshot or index fileset.
type checker struct {
	fsys    fs.FS
	dir     string
	name    filesetName
	present map[string]bool // suffixes found in dir
	// listed are the suffixes that belong to the fileset once its digest
	// is known (index filesets); nil: every present file belongs to it.
	listed map[string]bool
}

func (c *checker) path(suffix string) string {
	return path.Join(c.dir, c.name.fileName(suffix))
}

// split returns the fileset's files (sorted paths) and appends the present
// files that do not belong to it to other.
func (c *checker) split(other []string) (files, rest []string) {
	for suffix := range c.present {
		if c.listed == nil || c.listed[suffix] {
			files = append(files, c.path(suffix))
		} else {
			other = append(other, c.path(suffix))
		}
	}
	slices.Sort(files)
	return files, other
}

// head checks the checkpoint against the digest file and returns the
// digest file's contents.
func (c *checker) head() ([]byte, *Problem) {
	if !c.present[checkpointSuffix] {
		return nil, &Problem{Reason: NoCheckpoint, File: c.path(checkpointSuffix)}
	}
	if !c.present[digestSuffix] {
		return nil, &Problem{Reason: MissingFile, File: c.path(digestSuffix)}
	}
	want, p := readCheckpoint(c.fsys, c.path(checkpointSuffix))
	if p != nil {
		return nil, p
	}
	digest, err := fs.ReadFile(c.fsys, c.path(digestSuffix))
	if err != nil {
		return nil, unreadable(c.path(digestSuffix), err)
	}
	if got := adler32.Checksum(digest); got != want {
		return nil, &Problem{
			Reason: CheckpointMismatch, File: c.path(checkpointSuffix),
			Detail: fmt.Sprintf("checkpoint %08x, adler32 of %s %08x", want, c.name.fileName(digestSuffix), got),
		}
	}
	return digest, nil
}

// checkData checks a data or snapshot fileset: its digest file is five
// little-endian adler32s of info, index, summaries, bloomfilter and data.
func (c *checker) checkData() *Problem {
	digest, p := c.head()
	if p != nil {
		return p
	}
	if len(digest) != 4*len(dataSuffixes) {
		return &Problem{
			Reason: BadDigest, File: c.path(digestSuffix),
			Detail: fmt.Sprintf("%d bytes, want %d", len(digest), 4*len(dataSuffixes)),
		}
	}
	for i, suffix := range dataSuffixes {
		if p := c.checkFile(suffix, binary.LittleEndian.Uint32(digest[4*i:])); p != nil {
			return p
		}
	}
	return nil
}

// checkIndex checks an index fileset: its digest file is an IndexDigests
// protobuf with the info file's adler32 and each segment file's.
func (c *checker) checkIndex() *Problem {
	raw, p := c.head()
	if p != nil {
		return p
	}
	d, err := decodeIndexDigests(raw)
	if err != nil {
		return &Problem{Reason: BadDigest, File: c.path(digestSuffix), Detail: err.Error()}
	}
	c.listed = map[string]bool{infoSuffix: true, digestSuffix: true, checkpointSuffix: true}
	for i, seg := range d.segments {
		for _, f := range seg.files {
			c.listed[segmentSuffix(i, f.fileType)] = true
		}
	}
	if p := c.checkFile(infoSuffix, d.info); p != nil {
		return p
	}
	for i, seg := range d.segments {
		for _, f := range seg.files {
			if p := c.checkFile(segmentSuffix(i, f.fileType), f.digest); p != nil {
				return p
			}
		}
	}
	return nil
}

// checkFile compares the adler32 of the fileset's file with this suffix
// with its digest entry.
func (c *checker) checkFile(suffix string, want uint32) *Problem {
	p := c.path(suffix)
	if !c.present[suffix] {
		return &Problem{Reason: MissingFile, File: p}
	}
	got, err := fileAdler32(c.fsys, p)
	if err != nil {
		return unreadable(p, err)
	}
	if got != want {
		return &Problem{Reason: DigestMismatch, File: p, Detail: fmt.Sprintf("adler32 %08x, digest %08x", got, want)}
	}
	return nil
}

// checkCheckpoint checks a checkpoint file holding the adler32 of another
// file (snapshot metadata).
func checkCheckpoint(fsys fs.FS, checkpoint, file string) *Problem {
	want, p := readCheckpoint(fsys, checkpoint)
	if p != nil {
		return p
	}
	got, err := fileAdler32(fsys, file)
	if err != nil {
		return unreadable(file, err)
	}
	if got != want {
		return &Problem{
			Reason: CheckpointMismatch, File: checkpoint,
			Detail: fmt.Sprintf("checkpoint %08x, adler32 of %s %08x", want, path.Base(file), got),
		}
	}
	return nil
}

// readCheckpoint reads a checkpoint file: 4 bytes, a little-endian adler32.
func readCheckpoint(fsys fs.FS, name string) (uint32, *Problem) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, &Problem{Reason: NoCheckpoint, File: name}
		}
		return 0, unreadable(name, err)
	}
	if len(b) != 4 {
		return 0, &Problem{Reason: CheckpointMismatch, File: name, Detail: fmt.Sprintf("%d bytes, not 4", len(b))}
	}
	return binary.LittleEndian.Uint32(b), nil
}

func fileAdler32(fsys fs.FS, name string) (uint32, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := adler32.New()
	if _, err := io.Copy(h, f); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

func unreadable(name string, err error) *Problem {
	if errors.Is(err, fs.ErrNotExist) {
		// Gone between listing and reading (a fileset being removed).
		return &Problem{Reason: MissingFile, File: name}
	}
	return &Problem{Reason: Unreadable, File: name, Detail: err.Error()}
}
