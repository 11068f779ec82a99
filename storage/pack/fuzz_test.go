package pack

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/storagetest"
)

// seedPacks are small valid packs (encrypted with fixedKey, or plain) used
// as fuzz seeds; TestWriteFuzzCorpus stores them under testdata/fuzz.
func seedPacks(t testing.TB) map[string][]byte {
	r := rand.New(rand.NewPCG(42, 42))
	out := map[string][]byte{}
	for mode, c := range ciphers(t) {
		out[mode+"-empty"], _ = buildPack(t, c, nil)
		out[mode+"-one-raw"], _ = buildPack(t, c, []blob{newBlob(BlobData, []byte("hello, pack"))})
		out[mode+"-mixed"], _ = buildPack(t, c, []blob{
			newBlob(BlobData, nil),
			newBlob(BlobMeta, textBytes(r, 400)),
			newBlob(BlobData, randomBytes(r, 40)),
			newBlob(BlobMeta, bytes.Repeat([]byte("ab"), 100)),
		})
	}
	return out
}

// TestFuzzCorpus checks that the checked-in seed corpus of FuzzReadFooter holds
// a file for every seed, in Go's corpus format; with
// CRAYFISH_WRITE_FUZZ_CORPUS=1 it first regenerates the files (nonces are
// random, so their bytes change).
func TestFuzzCorpus(t *testing.T) {
	storagetest.CheckFuzzCorpus(t, filepath.Join("testdata", "fuzz", "FuzzReadFooter"), seedPacks(t))
}

// fuzzCipher picks the mode from the header flag so the fuzzer explores
// both: the plain mode reaches every entry check, the encrypted one the
// authentication paths.
func fuzzCipher(t *testing.T, data []byte) *crypto.Cipher {
	if len(data) > 5 && data[5]&flagEncrypted != 0 {
		return testCipher(t)
	}
	return crypto.NoEncryption()
}

// FuzzReadFooter feeds whole (small) packs to ReadFooter and OpenBlob: no
// input may panic, hang or allocate without bound; errors must wrap
// ErrCorrupt; accepted footers must satisfy every documented invariant and
// every blob that opens must hash to its id.
func FuzzReadFooter(f *testing.F) {
	for _, data := range seedPacks(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := fuzzCipher(t, data)
		check := func(data, header []byte) {
			entries, err := ReadFooter(c, header, data, int64(len(data)))
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error does not wrap ErrCorrupt: %v", err)
				}
				return
			}
			fl, count, _, err := ParseTrailer(data)
			if err != nil || int(count) != len(entries) {
				t.Fatalf("accepted footer but trailer: %v", err)
			}
			prev := int64(HeaderSize)
			limit := int64(len(data)) - FooterReadSize(fl)
			for _, e := range entries {
				if int64(e.Offset) < prev || e.End() > limit || !e.Type.Valid() || !e.Codec.Valid() || e.RawLen > MaxBlobSize {
					t.Fatalf("accepted bad entry %+v (prev end %d, limit %d)", e, prev, limit)
				}
				prev = e.End()
				pt, err := OpenBlob(c, e, data[e.Offset:e.End()])
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("OpenBlob error does not wrap ErrCorrupt: %v", err)
					}
					continue
				}
				if len(pt) != int(e.RawLen) || sha256.Sum256(pt) != e.ID {
					t.Fatal("OpenBlob returned unverified plaintext")
				}
			}
			for _, rg := range PlanReads(entries, 64) {
				for _, e := range rg.Entries {
					if _, err := rg.Record(data[rg.Offset:rg.End()], e); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		var header []byte
		if len(data) >= HeaderSize {
			header = data[:HeaderSize]
		}
		check(data, header)
		check(data, nil)
		// The same input with its crc made consistent gets past the crc
		// check, so mutations reach the footer parser.
		fixed := bytes.Clone(data)
		if fixCRC(fixed) {
			check(fixed, nil)
		}
	})
}
