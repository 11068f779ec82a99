package hashcache

import (
	"encoding/binary"
	"fmt"
	"io/fs"
)

// FileID is the identity of a file's content as the filesystem reports it:
// if none of these fields changed, the content is assumed unchanged. It is
// compared field by field; a zero CTime means "not tracked" (see
// WithoutCTime) and only ever equals another zero.
type FileID struct {
	Dev   uint64 // device of the filesystem
	Ino   uint64 // inode number
	Size  int64  // bytes
	MTime int64  // modification time, nanoseconds since the epoch
	CTime int64  // status change time, nanoseconds since the epoch; 0 if not tracked
	Type  uint32 // fs.FileMode type bits (0 for a regular file)
}

// FileIDOf returns the identity of the file fi describes. ok is false when
// fi carries no inode metadata (not a Unix syscall.Stat_t): such a file
// cannot be cached, and the returned id has only Size, MTime and Type.
func FileIDOf(fi fs.FileInfo) (id FileID, ok bool) {
	id = FileID{Size: fi.Size(), MTime: fi.ModTime().UnixNano(), Type: uint32(fi.Mode().Type())}
	return statID(fi, id)
}

// WithoutCTime returns id with CTime cleared. A caller that itself changes
// the inode's ctime between two looks at a file (creating or removing a
// hard link to it does) must not compare ctimes, and says so by storing and
// looking up ids without one.
func (id FileID) WithoutCTime() FileID {
	id.CTime = 0
	return id
}

// idSize is the encoded size of a FileID.
const idSize = 8 + 8 + 8 + 8 + 8 + 4

func (id FileID) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], id.Dev)
	binary.BigEndian.PutUint64(b[8:], id.Ino)
	binary.BigEndian.PutUint64(b[16:], uint64(id.Size))
	binary.BigEndian.PutUint64(b[24:], uint64(id.MTime))
	binary.BigEndian.PutUint64(b[32:], uint64(id.CTime))
	binary.BigEndian.PutUint32(b[40:], id.Type)
}

func getID(b []byte) FileID {
	return FileID{
		Dev:   binary.BigEndian.Uint64(b[0:]),
		Ino:   binary.BigEndian.Uint64(b[8:]),
		Size:  int64(binary.BigEndian.Uint64(b[16:])),
		MTime: int64(binary.BigEndian.Uint64(b[24:])),
		CTime: int64(binary.BigEndian.Uint64(b[32:])),
		Type:  binary.BigEndian.Uint32(b[40:]),
	}
}

// EncodedFileIDSize is the length of a FileID encoded by AppendBinary.
const EncodedFileIDSize = idSize

// AppendBinary appends the fixed-size (EncodedFileIDSize) encoding of id
// to b.
func (id FileID) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, make([]byte, idSize)...)
	id.put(b[len(b)-idSize:])
	return b, nil
}

// UnmarshalBinary decodes what AppendBinary encoded.
func (id *FileID) UnmarshalBinary(b []byte) error {
	if len(b) != idSize {
		return fmt.Errorf("hashcache: file id of %d bytes, want %d", len(b), idSize)
	}
	*id = getID(b)
	return nil
}
