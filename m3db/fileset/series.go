package fileset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ErrBadIndexFile marks a data fileset's index file that is not the
// msgpack stream M3 writes.
var ErrBadIndexFile = errors.New("unreadable fileset index file")

// SeriesIDs reads up to max series ids from the index file of a data or
// snapshot fileset f (its "-index.db": one msgpack-encoded entry per
// series — index, id, size, offset, checksum, encoded tags — in M3's
// order), so a restore can read back series the backup holds without
// asking M3's index. A fileset of another kind has no ids.
func SeriesIDs(fsys fs.FS, f Fileset, max int) ([]string, error) {
	if f.Kind != Data && f.Kind != Snapshot {
		return nil, nil
	}
	for _, file := range f.Files {
		if strings.HasSuffix(file, "-index.db") {
			return ReadSeriesIDs(fsys, file, max)
		}
	}
	return nil, fmt.Errorf("%w: %s has no index file", ErrBadIndexFile, f)
}

// ReadSeriesIDs reads up to max series ids from a data or snapshot
// fileset's index file.
func ReadSeriesIDs(fsys fs.FS, name string, max int) ([]string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	// An entry's id is the byte string right after an array header and
	// one integer (the entry's field count, then its index); the encoded
	// tags follow two integers, never an array header.
	var ids []string
	var prev1, prev2 byte
	err = scanMsgpack(b, func(kind byte, v []byte) bool {
		if kind == 'b' && prev1 == 'i' && prev2 == 'a' {
			ids = append(ids, string(v))
		}
		prev2, prev1 = prev1, kind
		return len(ids) < max
	})
	if err != nil {
		return ids, fmt.Errorf("%w: %s: %v", ErrBadIndexFile, name, err)
	}
	return ids, nil
}

// scanMsgpack calls fn with each msgpack token of b: 'i' an integer,
// 'b' a byte or text string (v its bytes), 'a' an array header, 'm' a map
// header, 'o' anything else (nil, bool, float). fn returns false to stop.
func scanMsgpack(b []byte, fn func(kind byte, v []byte) bool) error {
	for len(b) > 0 {
		c := b[0]
		kind, head, size := byte('o'), 1, 0
		switch {
		case c <= 0x7f || c >= 0xe0:
			kind = 'i'
		case c >= 0x80 && c <= 0x8f:
			kind = 'm'
		case c >= 0x90 && c <= 0x9f:
			kind = 'a'
		case c >= 0xa0 && c <= 0xbf:
			kind, size = 'b', int(c&0x1f)
		case c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c == 0xc4 || c == 0xd9:
			kind, head = 'b', 2
		case c == 0xc5 || c == 0xda:
			kind, head = 'b', 3
		case c == 0xc6 || c == 0xdb:
			kind, head = 'b', 5
		case c == 0xca:
			head = 5
		case c == 0xcb:
			head = 9
		case c == 0xcc || c == 0xd0:
			kind, head = 'i', 2
		case c == 0xcd || c == 0xd1:
			kind, head = 'i', 3
		case c == 0xce || c == 0xd2:
			kind, head = 'i', 5
		case c == 0xcf || c == 0xd3:
			kind, head = 'i', 9
		case c == 0xdc || c == 0xde:
			kind, head = map[byte]byte{0xdc: 'a', 0xde: 'm'}[c], 3
		case c == 0xdd || c == 0xdf:
			kind, head = map[byte]byte{0xdd: 'a', 0xdf: 'm'}[c], 5
		default:
			return fmt.Errorf("msgpack type 0x%02x not expected", c)
		}
		if len(b) < head {
			return errors.New("truncated")
		}
		if kind == 'b' && head > 1 {
			switch head {
			case 2:
				size = int(b[1])
			case 3:
				size = int(binary.BigEndian.Uint16(b[1:3]))
			case 5:
				size = int(binary.BigEndian.Uint32(b[1:5]))
			}
		}
		if size < 0 || len(b) < head+size {
			return errors.New("truncated")
		}
		if !fn(kind, b[head:head+size]) {
			return nil
		}
		b = b[head+size:]
	}
	return nil
}
