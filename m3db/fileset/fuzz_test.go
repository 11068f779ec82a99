package fileset

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/encoding/protowire"
)

// encodeIndexDigests is decodeIndexDigests' inverse (for the fields it
// reads).
func encodeIndexDigests(d indexDigests) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(d.info))
	for _, s := range d.segments {
		var sb []byte
		sb = protowire.AppendTag(sb, 1, protowire.BytesType)
		sb = protowire.AppendString(sb, s.segmentType)
		for _, f := range s.files {
			var fb []byte
			fb = protowire.AppendTag(fb, 1, protowire.BytesType)
			fb = protowire.AppendString(fb, f.fileType)
			fb = protowire.AppendTag(fb, 2, protowire.VarintType)
			fb = protowire.AppendVarint(fb, uint64(f.digest))
			sb = protowire.AppendTag(sb, 2, protowire.BytesType)
			sb = protowire.AppendBytes(sb, fb)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	return b
}

const fuzzIndexDir = "index/data/metrics"

// fuzzIndexFileset is the real index fileset in ../m3pb/testdata/index.
func fuzzIndexFileset(tb testing.TB) fstest.MapFS {
	dir := filepath.Join("..", "m3pb", "testdata", "index")
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		fsys[path.Join(fuzzIndexDir, e.Name())] = &fstest.MapFile{Data: b}
	}
	return fsys
}

func commitLogChunk(data []byte) []byte {
	h := make([]byte, commitLogChunkHeader, commitLogChunkHeader+len(data))
	binary.LittleEndian.PutUint32(h[0:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[4:], adler32.Checksum(h[0:4]))
	binary.LittleEndian.PutUint32(h[8:], adler32.Checksum(data))
	return append(h, data...)
}

// FuzzFileset feeds arbitrary bytes to the M3DB file parsers crayfish has
// of its own (kind picks one): the msgpack scan of a data fileset's index
// file (series ids), an index fileset's digest protobuf, a commit log's
// chunk headers, and the whole scan of a data directory holding the real
// index fileset with a fuzzed digest file (its checkpoint made to match)
// next to a file of the fuzzed name. Nothing may panic. Series ids are at
// most the limit asked; a decoded digest file re-encodes to one that
// decodes the same; a commit log's complete length is a chunk boundary
// within the file, and the log cut there is complete as a whole; a scan
// reports each fileset at most once, any problem naming a file.
func FuzzFileset(f *testing.F) {
	real := fuzzIndexFileset(f)
	digest := real[path.Join(fuzzIndexDir, "fileset-1796400000000000000-0-digest.db")].Data
	f.Add(byte(1), "", digest)
	f.Add(byte(3), "", digest)
	f.Add(byte(3), "fileset-1796400000000000000-1-info.db", digest)
	f.Add(byte(3), "fileset-1796400000000000000-0-segment-1-docdata.db", append(bytes.Clone(digest), 0x12, 0x02, 0x0a, 0x00))
	// An index file entry: array header, the index, the id, tags.
	f.Add(byte(0), "", []byte{0x94, 0x01, 0xa3, 'f', 'o', 'o', 0xc4, 0x02, 'a', 'b', 0x00, 0x95, 0x02, 0xd9, 0x03, 'b', 'a', 'r'})
	f.Add(byte(0), "", []byte{0x94, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add(byte(2), "", append(commitLogChunk([]byte("hello")), commitLogChunk(bytes.Repeat([]byte("x"), 40))[:20]...))
	f.Fuzz(func(t *testing.T, kind byte, name string, data []byte) {
		switch kind % 4 {
		case 0:
			fsys := fstest.MapFS{"f-index.db": {Data: data}}
			for _, max := range []int{1, 1000} {
				ids, err := ReadSeriesIDs(fsys, "f-index.db", max)
				if len(ids) > max {
					t.Fatalf("%d ids, at most %d asked", len(ids), max)
				}
				for _, id := range ids {
					if !bytes.Contains(data, []byte(id)) {
						t.Fatalf("id %q is not in the file", id)
					}
				}
				_ = err
			}
			total := 0
			_ = scanMsgpack(data, func(kind byte, v []byte) bool {
				total += len(v) + 1
				return true
			})
			if total > len(data) {
				t.Fatalf("tokens of %d bytes in %d bytes", total, len(data))
			}
		case 1:
			d, err := decodeIndexDigests(data)
			if err != nil {
				return
			}
			d2, err := decodeIndexDigests(encodeIndexDigests(d))
			if err != nil || !reflect.DeepEqual(d, d2) {
				t.Fatalf("digests do not round-trip: %v\n%+v\n%+v", err, d, d2)
			}
		case 2:
			n, err := CompleteCommitLogLength(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("reading from memory: %v", err)
			}
			if n < 0 || n > int64(len(data)) {
				t.Fatalf("complete length %d of %d bytes", n, len(data))
			}
			if again, _ := CompleteCommitLogLength(bytes.NewReader(data[:n]), n); again != n {
				t.Fatalf("the log cut at %d is complete up to %d", n, again)
			}
		case 3:
			fsys := fstest.MapFS{}
			for k, v := range real {
				fsys[k] = v
			}
			sum := make([]byte, 4)
			binary.LittleEndian.PutUint32(sum, adler32.Checksum(data))
			fsys[path.Join(fuzzIndexDir, "fileset-1796400000000000000-0-digest.db")] = &fstest.MapFile{Data: data}
			fsys[path.Join(fuzzIndexDir, "fileset-1796400000000000000-0-checkpoint.db")] = &fstest.MapFile{Data: sum}
			if name != "" && !strings.ContainsAny(name, "/\\") && validFuzzName(name) {
				fsys[path.Join(fuzzIndexDir, name)] = &fstest.MapFile{Data: data}
				fsys[path.Join("data", "metrics", "3", name)] = &fstest.MapFile{Data: data}
				fsys[path.Join("commitlogs", name)] = &fstest.MapFile{Data: data}
			}
			rep, err := Scan(fsys)
			if err != nil {
				t.Fatalf("scan of a readable tree: %v", err)
			}
			if name == "" && bytes.Equal(data, digest) && (len(rep.Filesets) != 1 || !rep.Filesets[0].OK()) {
				t.Fatalf("the real index fileset is not found intact: %+v", rep)
			}
			seen := map[string]bool{}
			for _, fset := range rep.Filesets {
				key := fset.String() + "|" + fset.SnapshotID
				if seen[key] {
					t.Fatalf("fileset %s reported twice", key)
				}
				seen[key] = true
				if fset.Problem != nil && fset.Problem.File == "" {
					t.Fatalf("problem without a file: %v", fset.Problem)
				}
			}
		}
	})
}

// validFuzzName: MapFS paths must be valid fs paths.
func validFuzzName(name string) bool {
	return name != "." && name != ".." && !strings.ContainsRune(name, 0) && strings.ToValidUTF8(name, "") == name
}
