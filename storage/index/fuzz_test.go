package index

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/storagetest"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// seedSegments are small valid segments (encrypted with fixedKey, or plain)
// and raw payloads, used as fuzz seeds.
func seedSegments(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for mode, c := range ciphers(t) {
		r := rand.New(rand.NewPCG(42, 42))
		small := &Segment{
			Packs:      []PackInfo{{ID: randID(r), Type: pack.BlobData, Size: 1 << 20}, {ID: randID(r), Type: pack.BlobMeta, Size: 5000}},
			Supersedes: []pack.ID{randID(r)},
		}
		ov := uint32(c.Overhead())
		for i := 0; i < 6; i++ {
			small.Entries = append(small.Entries, SegmentEntry{ID: randID(r), PackOrd: uint32(i % 2),
				Offset: 16 + uint32(i)*200, StoredLen: 100 + ov, RawLen: 100 + uint32(i%2)*50,
				Type: pack.BlobType(i % 2), Codec: pack.Codec(i % 2)})
		}
		for name, seg := range map[string]*Segment{"empty": {}, "small": small} {
			data, err := EncodeSegment(c, seg)
			if err != nil {
				t.Fatal(err)
			}
			out[mode+"-"+name] = data
			if !c.Encrypted() {
				s := *seg
				slices.SortFunc(s.Entries, func(a, b SegmentEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
				out["payload-"+name] = rawPayload(&s)
			}
		}
	}
	return out
}

// TestFuzzCorpus checks that the checked-in seed corpus of FuzzDecodeSegment holds
// a file for every seed, in Go's corpus format; with
// CRAYFISH_WRITE_FUZZ_CORPUS=1 it first regenerates the files (nonces are
// random, so their bytes change).
func TestFuzzCorpus(t *testing.T) {
	storagetest.CheckFuzzCorpus(t, filepath.Join("testdata", "fuzz", "FuzzDecodeSegment"), seedSegments(t))
}

// FuzzDecodeSegment feeds arbitrary bytes to DecodeSegment, both as a
// segment object (mode chosen by the header flag) and as a raw payload
// wrapped in a valid unencrypted container, so the fuzzer reaches the
// payload checks without having to forge zstd frames. Nothing may panic;
// errors must wrap ErrCorrupt; an accepted segment must re-encode to an
// equal segment and load into an index.
func FuzzDecodeSegment(f *testing.F) {
	for _, data := range seedSegments(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := crypto.NoEncryption()
		if len(data) > 5 && data[5]&flagEncrypted != 0 {
			c = testCipher(t)
		}
		check := func(c *crypto.Cipher, obj []byte) {
			seg, err := DecodeSegment(c, obj)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error does not wrap ErrCorrupt: %v", err)
				}
				return
			}
			again, err := EncodeSegment(c, seg)
			if err != nil {
				t.Fatalf("accepted segment does not re-encode: %v", err)
			}
			seg2, err := DecodeSegment(c, again)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seg.Entries, seg2.Entries) || !slices.Equal(seg.Packs, seg2.Packs) || !slices.Equal(seg.Supersedes, seg2.Supersedes) {
				t.Fatal("re-encoded segment differs")
			}
			x := New()
			n, err := x.AddSegment(seg)
			if err != nil || n != len(seg.Entries) || x.Len() != n {
				t.Fatalf("AddSegment: %d, %v", n, err)
			}
			for _, e := range seg.Entries {
				loc, ok := x.Lookup(e.ID)
				if !ok || loc.Offset != e.Offset || loc.Pack != seg.Packs[e.PackOrd].ID {
					t.Fatal("lookup after AddSegment")
				}
			}
		}
		check(c, data)
		if len(data) <= 1<<20 {
			check(crypto.NoEncryption(), sealPayload(crypto.NoEncryption(), data))
		}
	})
}
