package fileset

import (
	"encoding/binary"
	"hash/adler32"
	"io"
)

// commitLogChunkHeader is the header of each chunk of an M3 commit log:
// the data's size, the adler32 of those 4 bytes and the adler32 of the
// data, each a little-endian uint32. A commit log is a sequence of chunks.
const commitLogChunkHeader = 12

// CompleteCommitLogLength is the length of the longest prefix of a commit
// log (size bytes readable at r) made of whole chunks: where a chunk
// that is cut short, or whose size field fails its checksum, begins. A
// copy of the active commit log cut there ends where M3's reader stops
// cleanly.
func CompleteCommitLogLength(r io.ReaderAt, size int64) (int64, error) {
	var off int64
	head := make([]byte, commitLogChunkHeader)
	for off+commitLogChunkHeader <= size {
		if _, err := r.ReadAt(head, off); err != nil {
			return off, err
		}
		n := binary.LittleEndian.Uint32(head[0:4])
		if adler32.Checksum(head[0:4]) != binary.LittleEndian.Uint32(head[4:8]) {
			return off, nil
		}
		end := off + commitLogChunkHeader + int64(n)
		if end > size {
			return off, nil
		}
		off = end
	}
	return off, nil
}
