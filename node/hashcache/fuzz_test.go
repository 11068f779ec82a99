package hashcache

import (
	"bytes"
	"slices"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

// FuzzDecodeEntry feeds arbitrary values of the hash cache's database (a
// file on the node's disk, which a crash or a bad disk may damage) to
// decode, with the identity the value itself holds (so the fuzzer gets
// past the identity check) and with another. Nothing may panic. A value
// accepted is exactly what encode writes for what it decoded to (so a
// damaged value is never half-read), its ids are consistent with the file
// size, and the result does not alias the value. File ids decode from
// and encode to their fixed size.
func FuzzDecodeEntry(f *testing.F) {
	id := FileID{Dev: 1, Ino: 2, Size: 5 << 20, MTime: 3, CTime: 4, Type: 1}
	content := storage.ObjectID{9}
	f.Add("a/b", encode("a/b", id, content, []storage.ObjectID{{1}, {2}}))
	f.Add("small", encode("small", FileID{Size: 10}, content, []storage.ObjectID{content}))
	f.Add("empty", encode("empty", FileID{Ino: 7}, storage.ObjectID{}, nil))
	f.Add("neg", encode("neg", FileID{Size: -1}, content, nil))
	f.Fuzz(func(t *testing.T, path string, v []byte) {
		var fid FileID
		if len(v) >= idSize {
			if err := fid.UnmarshalBinary(v[:idSize]); err != nil {
				t.Fatal(err)
			}
			if b, _ := fid.AppendBinary(nil); !bytes.Equal(b, v[:idSize]) {
				t.Fatal("file id does not round-trip")
			}
		}
		if _, _, ok := decode(path, v, FileID{Ino: ^uint64(0), Size: -7}); ok && fid != (FileID{Ino: ^uint64(0), Size: -7}) {
			t.Fatal("decoded a value of another identity")
		}
		orig := bytes.Clone(v)
		c, chunks, ok := decode(path, v, fid)
		if !ok {
			return
		}
		if !consistent(fid, c, chunks) {
			t.Fatalf("decoded inconsistent ids for %+v", fid)
		}
		if again := encode(path, fid, c, chunks); !bytes.Equal(again, orig) {
			t.Fatalf("an accepted value is not what encode writes:\n%x\n%x", orig, again)
		}
		kept := slices.Clone(chunks)
		for i := range v {
			v[i] ^= 0xff
		}
		if !slices.Equal(kept, chunks) {
			t.Fatal("the decoded chunk ids alias the value")
		}
	})
}
