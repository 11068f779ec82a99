package tree

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/crayfish-backup/crayfish/node/hashcache"
)

// unlinkedListName is the file, inside a snapshot directory, that lists the
// files Snapshot did not link because the hash cache knew them (see
// "Unchanged files are not linked" in the package documentation). The name
// is not valid UTF-8, so no entry can ever have it: Snapshot skips such
// names and validateEntries rejects them.
const unlinkedListName = "\xffcrayfish-unlinked"

// unlinkedMagic starts the list; the format is
//
//	magic, uvarint len(root), root,
//	then per file: uvarint len(path), path, FileID (EncodedFileIDSize bytes),
//	then a CRC-32C (big endian) of everything before it.
const unlinkedMagic = "crayfish-unlinked-1\n"

// errUnlinkedList: the list is damaged or not ours.
var errUnlinkedList = errors.New("list of unlinked files damaged")

// unlinkedFile is a file of the snapshot that is not in the snapshot
// directory: Upload may read it only from the live root, and only while its
// identity is still id (ctime included: nothing of ours linked or unlinked
// it).
type unlinkedFile struct {
	rel string
	id  hashcache.FileID
}

// writeUnlinkedList writes the list into the open file f and syncs it:
// the caller (the agent) records the snapshot durably next, and Upload
// must then find the list.
func writeUnlinkedList(f *os.File, root string, files []unlinkedFile) error {
	h := crc32.New(crcTable)
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	buf := make([]byte, 0, 256)
	buf = append(buf, unlinkedMagic...)
	buf = binary.AppendUvarint(buf, uint64(len(root)))
	buf = append(buf, root...)
	w.Write(buf)
	for _, u := range files {
		buf = binary.AppendUvarint(buf[:0], uint64(len(u.rel)))
		buf = append(buf, u.rel...)
		buf, _ = u.id.AppendBinary(buf)
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if _, err := f.Write(binary.BigEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return err
	}
	return f.Sync()
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// maxUnlinkedList bounds the list Upload reads (far above 10 M files).
const maxUnlinkedList = 2 << 30

// readUnlinkedList reads the list from the snapshot directory. A missing
// list means every file is in the directory: root is "" and files nil. The
// list must belong to whoever runs this (the agent wrote it), so that
// someone able to write into an in-place root cannot plant one.
func readUnlinkedList(dir *os.Root) (root string, files map[string]hashcache.FileID, err error) {
	f, err := dir.OpenFile(unlinkedListName, os.O_RDONLY|openFlags, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxUnlinkedList || !ownedByUs(fi) {
		return "", nil, fmt.Errorf("%s: %w (not a regular file of ours)", f.Name(), errUnlinkedList)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", nil, err
	}
	root, files, ok := parseUnlinkedList(b)
	if !ok {
		return "", nil, fmt.Errorf("%s: %w", f.Name(), errUnlinkedList)
	}
	return root, files, nil
}

func parseUnlinkedList(b []byte) (root string, files map[string]hashcache.FileID, ok bool) {
	if len(b) < len(unlinkedMagic)+4 || !bytes.HasPrefix(b, []byte(unlinkedMagic)) {
		return "", nil, false
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return "", nil, false
	}
	rest := body[len(unlinkedMagic):]
	str := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		s := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return s, true
	}
	if root, ok = str(); !ok || !filepath.IsAbs(root) {
		return "", nil, false
	}
	files = map[string]hashcache.FileID{}
	for len(rest) > 0 {
		rel, ok := str()
		if !ok || len(rest) < hashcache.EncodedFileIDSize {
			return "", nil, false
		}
		var id hashcache.FileID
		if err := id.UnmarshalBinary(rest[:hashcache.EncodedFileIDSize]); err != nil {
			return "", nil, false
		}
		rest = rest[hashcache.EncodedFileIDSize:]
		files[rel] = id
	}
	return root, files, true
}
