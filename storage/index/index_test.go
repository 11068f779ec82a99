package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/storagetest"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

const fixedKey = "crayfish-index-test-key-32bytes!"

func testCipher(t testing.TB) *crypto.Cipher { return storagetest.Cipher(t, fixedKey) }

func ciphers(t testing.TB) map[string]*crypto.Cipher { return storagetest.Ciphers(t, fixedKey) }

func randID(r *rand.Rand) pack.ID {
	var id pack.ID
	for i := 0; i < 32; i += 8 {
		binary.LittleEndian.PutUint64(id[i:], r.Uint64())
	}
	return id
}

// randLoc returns a plausible location in pack p (size 12 MiB) of an
// encrypted repository.
func randLoc(r *rand.Rand, p pack.ID, typ pack.BlobType) Location {
	return randLocOv(r, p, typ, crypto.Overhead)
}

func randLocOv(r *rand.Rand, p pack.ID, typ pack.BlobType, overhead uint32) Location {
	raw := uint32(r.IntN(4 << 20))
	l := Location{Pack: p, PackType: typ, PackSize: 12 << 20, Offset: 16 + uint32(r.IntN(8<<20)), Type: typ}
	if r.IntN(2) == 0 || raw == 0 {
		l.Codec, l.RawLen, l.StoredLen = pack.CodecRaw, raw, raw+overhead
	} else {
		l.Codec, l.RawLen, l.StoredLen = pack.CodecZstd, raw, raw/2+1+overhead
	}
	return l
}

func TestIndexBasics(t *testing.T) {
	for name, x := range map[string]*Index{"New": New(), "zero value": {}} {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 1))
			p1, p2 := randID(r), randID(r)
			id := randID(r)
			if x.Has(id) || x.Len() != 0 {
				t.Fatal("empty index has something")
			}
			if _, ok := x.Lookup(id); ok {
				t.Fatal("lookup in empty index")
			}
			loc := randLoc(r, p1, pack.BlobData)
			if added, err := x.Add(id, loc); !added || err != nil {
				t.Fatal(added, err)
			}
			got, ok := x.Lookup(id)
			if !ok || got != loc || !x.Has(id) || x.Len() != 1 {
				t.Fatalf("Lookup = %+v %v", got, ok)
			}
			// A second location for the same blob is ignored.
			if added, err := x.Add(id, randLoc(r, p2, pack.BlobData)); added || err != nil {
				t.Fatal(added, err)
			}
			if got, _ := x.Lookup(id); got != loc {
				t.Fatal("first location not kept")
			}
			// Pack contradictions.
			bad := randLoc(r, p1, pack.BlobMeta)
			if _, err := x.Add(randID(r), bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("type conflict: %v", err)
			}
			bad = randLoc(r, p1, pack.BlobData)
			bad.PackSize = 5 << 20
			if _, err := x.Add(randID(r), bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("size conflict: %v", err)
			}
			if x.Len() != 1 {
				t.Fatal("conflicting adds changed the index")
			}
			// Unknown size is filled in later.
			p3 := randID(r)
			l3 := randLoc(r, p3, pack.BlobMeta)
			l3.PackSize = 0
			id3 := randID(r)
			x.Add(id3, l3)
			l3b := randLoc(r, p3, pack.BlobMeta)
			x.Add(randID(r), l3b)
			if got, _ := x.Lookup(id3); got.PackSize != 12<<20 {
				t.Fatalf("pack size not learnt: %d", got.PackSize)
			}
			if ps := x.Packs(); len(ps) != 3 || ps[p1] != 12<<20 {
				t.Fatalf("Packs = %v", ps)
			}
			if e := loc.Entry(id); e.ID != id || e.Offset != loc.Offset || e.RawLen != loc.RawLen || e.Codec != loc.Codec {
				t.Fatalf("Entry = %+v", e)
			}
		})
	}
}

func TestIndexMany(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	x := New()
	var packs []pack.ID
	for i := 0; i < 50; i++ {
		packs = append(packs, randID(r))
	}
	want := map[pack.ID]Location{}
	for i := 0; i < 100000; i++ {
		id := randID(r)
		loc := randLoc(r, packs[i%50], pack.BlobType(i%50%2))
		want[id] = loc
		if _, err := x.Add(id, loc); err != nil {
			t.Fatal(err)
		}
	}
	if x.Len() != len(want) {
		t.Fatal(x.Len())
	}
	for id, loc := range want {
		got, ok := x.Lookup(id)
		if !ok || got != loc {
			t.Fatalf("Lookup(%x) = %+v %v", id[:4], got, ok)
		}
	}
	for i := 0; i < 10000; i++ {
		if x.Has(randID(r)) {
			t.Fatal("phantom id")
		}
	}
	var prev pack.ID
	n := 0
	for id, loc := range x.All() {
		if n > 0 && bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatal("All not sorted")
		}
		if want[id] != loc {
			t.Fatal("All location wrong")
		}
		prev = id
		n++
	}
	if n != len(want) {
		t.Fatalf("All yielded %d", n)
	}
	for range x.All() {
		break // early stop must work
	}
	if infos := x.PackInfos(); len(infos) != 50 || !slices.IsSortedFunc(infos, func(a, b PackInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) }) {
		t.Fatal("PackInfos")
	}
}

// TestIndexCollidingPrefixes: ids sharing long prefixes (as a hostile
// segment could list) still index correctly and quickly.
func TestIndexCollidingPrefixes(t *testing.T) {
	x := New()
	p := pack.ID{1}
	for i := 0; i < 50000; i++ {
		var id pack.ID
		binary.BigEndian.PutUint32(id[28:], uint32(i))
		if added, err := x.Add(id, Location{Pack: p, PackSize: 1 << 20, Offset: 16}); !added || err != nil {
			t.Fatal(added, err)
		}
	}
	for i := 0; i < 50000; i++ {
		var id pack.ID
		binary.BigEndian.PutUint32(id[28:], uint32(i))
		if !x.Has(id) {
			t.Fatal(i)
		}
	}
}

func TestMergeAndAddPack(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	a, b := New(), New()
	pa, pb := randID(r), randID(r)
	var ida, idb []pack.ID
	for i := 0; i < 1000; i++ {
		ida = append(ida, randID(r))
		a.Add(ida[i], randLoc(r, pa, pack.BlobData))
		idb = append(idb, randID(r))
		b.Add(idb[i], randLoc(r, pb, pack.BlobMeta))
	}
	shared := ida[0]
	b.Add(shared, randLoc(r, pb, pack.BlobMeta))
	wantShared, _ := a.Lookup(shared)
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2000 {
		t.Fatal(a.Len())
	}
	for _, id := range idb {
		la, _ := a.Lookup(id)
		lb, _ := b.Lookup(id)
		if la != lb {
			t.Fatal("merged location differs")
		}
	}
	if got, _ := a.Lookup(shared); got != wantShared {
		t.Fatal("merge replaced an existing location")
	}
	if err := a.Merge(a); err != nil || a.Len() != 2000 {
		t.Fatal("self merge")
	}
	// Conflicting pack type.
	c := New()
	c.Add(randID(r), randLoc(r, pa, pack.BlobMeta))
	if err := a.Merge(c); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("conflicting merge: %v", err)
	}

	// AddPack with real pack entries.
	w := pack.NewWriter(crypto.NoEncryption(), false)
	for i := 0; i < 10; i++ {
		data := []byte(fmt.Sprint("blob ", i))
		w.Add(sha256.Sum256(data), pack.BlobMeta, data)
	}
	data, entries, _ := w.Finish()
	x := New()
	pid := sha256.Sum256(data)
	if n, err := x.AddPack(PackInfo{ID: pid, Type: pack.BlobMeta, Size: uint32(len(data))}, entries); n != 10 || err != nil {
		t.Fatal(n, err)
	}
	if n, _ := x.AddPack(PackInfo{ID: pid, Type: pack.BlobMeta, Size: uint32(len(data))}, entries); n != 0 {
		t.Fatal("re-adding a pack added blobs")
	}
	for _, e := range entries {
		loc, ok := x.Lookup(e.ID)
		if !ok || loc.Entry(e.ID) != e || loc.Pack != pid {
			t.Fatal("AddPack location")
		}
		pt, err := pack.OpenBlob(crypto.NoEncryption(), loc.Entry(e.ID), data[loc.Offset:loc.Offset+loc.StoredLen])
		if err != nil || sha256.Sum256(pt) != e.ID {
			t.Fatal(err)
		}
	}
}

func sampleSegment(r *rand.Rand, c *crypto.Cipher) *Segment {
	seg := &Segment{Supersedes: []pack.ID{randID(r), randID(r)}}
	for i := 0; i < 3; i++ {
		seg.Packs = append(seg.Packs, PackInfo{ID: randID(r), Type: pack.BlobType(i % 2), Size: 12 << 20})
	}
	for i := 0; i < 200; i++ {
		l := randLocOv(r, pack.ID{}, 0, uint32(c.Overhead()))
		seg.Entries = append(seg.Entries, SegmentEntry{ID: randID(r), PackOrd: uint32(i % 3), Offset: l.Offset,
			StoredLen: l.StoredLen, RawLen: l.RawLen, Type: pack.BlobType(i % 3 % 2), Codec: l.Codec})
	}
	return seg
}

func TestSegmentRoundTrip(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(4, 4))
			seg := sampleSegment(r, c)
			// A duplicate id: the first occurrence is kept.
			dup := seg.Entries[5]
			dup.Offset += 1000
			seg.Entries = append(seg.Entries, dup)
			orig := slices.Clone(seg.Entries)
			data, err := EncodeSegment(c, seg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seg.Entries, orig) {
				t.Fatal("EncodeSegment modified its input")
			}
			if string(data[:4]) != "CFIX" || data[4] != 1 || (data[5] == 1) != c.Encrypted() {
				t.Fatalf("header % x", data[:16])
			}
			got, err := DecodeSegment(c, data)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(orig[:200])
			slices.SortFunc(want, func(a, b SegmentEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
			if !slices.Equal(got.Entries, want) || !slices.Equal(got.Packs, seg.Packs) || !slices.Equal(got.Supersedes, seg.Supersedes) {
				t.Fatal("round trip differs")
			}
			// Empty segment.
			data, err = EncodeSegment(c, &Segment{})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := DecodeSegment(c, data); err != nil || len(got.Entries)+len(got.Packs)+len(got.Supersedes) != 0 {
				t.Fatal(err)
			}
			// Into an index.
			x := New()
			if n, err := x.AddSegment(got); err != nil || n != 200 {
				t.Fatal(err)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	c := testCipher(t)
	r := rand.New(rand.NewPCG(5, 5))
	cases := map[string]func(s *Segment){
		"pack ord":     func(s *Segment) { s.Entries[0].PackOrd = 3 },
		"pack type":    func(s *Segment) { s.Packs[0].Type = 5 },
		"unknown size": func(s *Segment) { s.Packs[0].Size = 0 },
		"dup pack":     func(s *Segment) { s.Packs[1].ID = s.Packs[0].ID },
		"codec":        func(s *Segment) { s.Entries[0].Codec = 9 },
		"offset":       func(s *Segment) { s.Entries[0].Offset = 3 },
		"raw length":   func(s *Segment) { s.Entries[0].Codec, s.Entries[0].RawLen = pack.CodecRaw, s.Entries[0].StoredLen },
	}
	for what, edit := range cases {
		s := sampleSegment(r, c)
		edit(s)
		if _, err := EncodeSegment(c, s); err == nil {
			t.Errorf("%s: encoded", what)
		}
	}
}

func TestSegmentsFromRealPacks(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(6, 6))
			session := New()
			packs := map[pack.ID][]byte{}
			var ids []pack.ID
			for p := 0; p < 4; p++ {
				w := pack.NewWriter(c, c.Encrypted())
				for i := 0; i < 50; i++ {
					data := []byte(fmt.Sprintf("pack %d blob %d %d", p, i, r.Int()))
					id := sha256.Sum256(data)
					ids = append(ids, id)
					if _, err := w.Add(id, pack.BlobType(p%2), data); err != nil {
						t.Fatal(err)
					}
				}
				data, entries, err := w.Finish()
				if err != nil {
					t.Fatal(err)
				}
				pid := sha256.Sum256(data)
				packs[pid] = data
				if _, err := session.AddPack(PackInfo{ID: pid, Type: pack.BlobType(p % 2), Size: uint32(len(data))}, entries); err != nil {
					t.Fatal(err)
				}
			}
			segs := SegmentsFrom(session, 70)
			if len(segs) != 3 {
				t.Fatalf("%d segments", len(segs))
			}
			loaded := New()
			for _, s := range segs {
				if len(s.Entries) > 70 || len(s.Packs) > 2 {
					t.Fatalf("segment with %d entries, %d packs", len(s.Entries), len(s.Packs))
				}
				data, err := EncodeSegment(c, s)
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecodeSegment(c, data)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := loaded.AddSegment(got); err != nil {
					t.Fatal(err)
				}
			}
			if loaded.Len() != len(ids) {
				t.Fatal(loaded.Len())
			}
			for _, id := range ids {
				loc, ok := loaded.Lookup(id)
				if !ok {
					t.Fatal("lost blob")
				}
				pk := packs[loc.Pack]
				if int(loc.PackSize) != len(pk) {
					t.Fatal("pack size")
				}
				pt, err := pack.OpenBlob(c, loc.Entry(id), pk[loc.Offset:loc.Offset+loc.StoredLen])
				if err != nil || sha256.Sum256(pt) != id {
					t.Fatal(err)
				}
			}
			if SegmentsFrom(New(), 10) != nil || SegmentsFrom(nil, 10) != nil {
				t.Fatal("segments from nothing")
			}
		})
	}
}

func TestSegmentsFromSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes ~25 MiB")
	}
	c := testCipher(t)
	r := rand.New(rand.NewPCG(7, 7))
	x := New()
	var packs []pack.ID
	for i := 0; i < 2000; i++ {
		packs = append(packs, randID(r))
	}
	const n = 400000
	for i := 0; i < n; i++ {
		x.Add(randID(r), randLoc(r, packs[r.IntN(len(packs))], pack.BlobData))
	}
	segs := SegmentsFrom(x, 0)
	total := 0
	for _, s := range segs {
		// Room for the documented extra supersedes ids.
		for i := 0; i < 7000; i++ {
			s.Supersedes = append(s.Supersedes, randID(r))
		}
		data, err := EncodeSegment(c, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > MaxSegmentSize {
			t.Fatalf("segment of %d bytes", len(data))
		}
		total += len(s.Entries)
	}
	if total != n || len(segs) < 3 {
		t.Fatalf("%d entries in %d segments", total, len(segs))
	}
	t.Logf("%d entries -> %d segments", n, len(segs))
}

// sealPayload wraps a raw payload the way EncodeSegment does, without its
// validation, for hostile-input tests.
func sealPayload(c *crypto.Cipher, p []byte) []byte {
	enc, _ := codecs()
	h := header(c.Encrypted())
	return c.Seal(h, enc.EncodeAll(p, nil), aad(h))
}

func rawPayload(seg *Segment) []byte {
	p := binary.LittleEndian.AppendUint32(nil, uint32(len(seg.Packs)))
	p = binary.LittleEndian.AppendUint32(p, uint32(len(seg.Entries)))
	p = binary.LittleEndian.AppendUint32(p, uint32(len(seg.Supersedes)))
	for _, id := range seg.Supersedes {
		p = append(p, id[:]...)
	}
	for _, pk := range seg.Packs {
		p = append(p, pk.ID[:]...)
		p = append(p, byte(pk.Type), 0, 0, 0)
		p = binary.LittleEndian.AppendUint32(p, pk.Size)
	}
	for _, e := range seg.Entries {
		p = append(p, e.ID[:]...)
		p = binary.LittleEndian.AppendUint32(p, e.PackOrd)
		p = binary.LittleEndian.AppendUint32(p, e.Offset)
		p = binary.LittleEndian.AppendUint32(p, e.StoredLen)
		p = binary.LittleEndian.AppendUint32(p, e.RawLen)
		p = append(p, byte(e.Type), byte(e.Codec), 0, 0)
	}
	return p
}

func TestDecodeHostile(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(8, 8))
			base := sampleSegment(r, c)
			slices.SortFunc(base.Entries, func(a, b SegmentEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
			good := rawPayload(base)
			if _, err := DecodeSegment(c, sealPayload(c, good)); err != nil {
				t.Fatal(err)
			}
			expectCorrupt := func(what string, data []byte) {
				t.Helper()
				if _, err := DecodeSegment(c, data); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v", what, err)
				}
			}
			// Payload-level lies.
			payloadEdits := map[string]func(p []byte) []byte{
				"short":            func(p []byte) []byte { return p[:11] },
				"empty":            func(p []byte) []byte { return nil },
				"extra byte":       func(p []byte) []byte { return append(p, 0) },
				"missing byte":     func(p []byte) []byte { return p[:len(p)-1] },
				"entry count huge": func(p []byte) []byte { binary.LittleEndian.PutUint32(p[4:], 0xffffffff); return p },
				"pack count +1":    func(p []byte) []byte { binary.LittleEndian.PutUint32(p[0:], 4); return p },
				"supersedes huge":  func(p []byte) []byte { binary.LittleEndian.PutUint32(p[8:], 0x7fffffff); return p },
			}
			for what, edit := range payloadEdits {
				expectCorrupt(what, sealPayload(c, edit(bytes.Clone(good))))
			}
			segEdits := map[string]func(s *Segment){
				"unsorted":       func(s *Segment) { s.Entries[3], s.Entries[4] = s.Entries[4], s.Entries[3] },
				"duplicate id":   func(s *Segment) { s.Entries[4].ID = s.Entries[3].ID },
				"pack ord":       func(s *Segment) { s.Entries[7].PackOrd = 3 },
				"pack ord huge":  func(s *Segment) { s.Entries[7].PackOrd = 0xffffffff },
				"offset 0":       func(s *Segment) { s.Entries[0].Offset = 0 },
				"beyond pack":    func(s *Segment) { s.Entries[0].Offset = 12<<20 - 100 },
				"overflow":       func(s *Segment) { s.Entries[0].Offset, s.Entries[0].StoredLen = 0xffffff00, 0x1000 },
				"rawLen huge":    func(s *Segment) { s.Entries[0].RawLen = pack.MaxBlobSize + 1 },
				"type":           func(s *Segment) { s.Entries[0].Type = 2 },
				"codec":          func(s *Segment) { s.Entries[0].Codec = 2 },
				"pack type":      func(s *Segment) { s.Packs[1].Type = 3 },
				"pack size 0":    func(s *Segment) { s.Packs[1].Size = 0 },
				"pack size huge": func(s *Segment) { s.Packs[1].Size = 1 << 30 },
				"dup pack":       func(s *Segment) { s.Packs[2].ID = s.Packs[0].ID },
			}
			for what, edit := range segEdits {
				s := &Segment{Packs: slices.Clone(base.Packs), Entries: slices.Clone(base.Entries), Supersedes: base.Supersedes}
				edit(s)
				expectCorrupt(what, sealPayload(c, rawPayload(s)))
			}
			// Padding.
			p := bytes.Clone(good)
			p[countsSize+2*32+33] = 1 // pack 0 pad
			expectCorrupt("pack padding", sealPayload(c, p))
			p = bytes.Clone(good)
			p[countsSize+2*32+3*SegmentPackSize+51] = 1 // entry 0 pad
			expectCorrupt("entry padding", sealPayload(c, p))

			// Container-level damage.
			data := sealPayload(c, good)
			for i := 0; i < len(data); i += max(1, len(data)/300) {
				bad := bytes.Clone(data)
				bad[i] ^= 0x10
				_, err := DecodeSegment(c, bad)
				if c.Encrypted() || i < HeaderSize {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("flip at %d: %v", i, err)
					}
					if c.Encrypted() && i >= HeaderSize && !errors.Is(err, crypto.ErrAuth) {
						t.Fatalf("flip at %d: %v, want ErrAuth", i, err)
					}
				} else if err != nil && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("flip at %d: %v", i, err)
				}
			}
			for _, n := range []int{0, 5, 15, 16, 20, len(data) - 1} {
				expectCorrupt(fmt.Sprint("truncated to ", n), data[:n])
			}
			for i, h := range []string{"CFIY", "CFIX\x02", "CFIX\x01\x02", "CFIX\x01\x01\x00\x00\x00\x01"} {
				bad := bytes.Clone(data)
				copy(bad, h)
				expectCorrupt(fmt.Sprint("header ", i), bad)
			}
			// Mode mismatch.
			other := crypto.NoEncryption()
			if !c.Encrypted() {
				other = testCipher(t)
			}
			expectCorrupt("mode mismatch", sealPayload(other, good))
		})
	}
}

func TestDecodeWrongKeyAndBomb(t *testing.T) {
	c := testCipher(t)
	data, err := EncodeSegment(c, sampleSegment(rand.New(rand.NewPCG(9, 9)), c))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := crypto.NewCipher([]byte("another-key-another-key-32bytes!"))
	if _, err := DecodeSegment(other, data); !errors.Is(err, ErrCorrupt) || !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	// A frame declaring more than MaxPayload is refused before decoding,
	// and one without a size is cut off at MaxPayload.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	big := enc.EncodeAll(make([]byte, MaxPayload+1), nil)
	h := header(true)
	if _, err := DecodeSegment(c, c.Seal(h, big, aad(h))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bomb: %v", err)
	}
	if _, err := DecodeSegment(c, c.Seal(h, []byte("not zstd"), aad(h))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage frame: %v", err)
	}
	if _, err := DecodeSegment(c, c.Seal(h, nil, aad(h))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty frame: %v", err)
	}
}

// Replace moves an indexed blob to another location (a good copy replacing
// a damaged one) and adds one not indexed yet; a contradicting pack is
// refused like Add refuses it.
func TestIndexReplace(t *testing.T) {
	for name, x := range map[string]*Index{"New": New(), "zero value": {}} {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 3))
			p1, p2 := randID(r), randID(r)
			id, other := randID(r), randID(r)
			l1, l2 := randLoc(r, p1, pack.BlobData), randLoc(r, p2, pack.BlobData)
			if err := x.Replace(id, l1); err != nil {
				t.Fatal(err)
			}
			if _, err := x.Add(other, randLoc(r, p1, pack.BlobData)); err != nil {
				t.Fatal(err)
			}
			if err := x.Replace(id, l2); err != nil {
				t.Fatal(err)
			}
			if got, _ := x.Lookup(id); got != l2 || x.Len() != 2 {
				t.Fatalf("after Replace: %+v, %d blobs", got, x.Len())
			}
			if got, _ := x.Lookup(other); got.Pack != p1 {
				t.Fatalf("Replace moved another blob: %+v", got)
			}
			bad := l1
			bad.PackSize++
			if err := x.Replace(id, bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Replace with a contradicting pack size: %v", err)
			}
			if got, _ := x.Lookup(id); got != l2 {
				t.Fatalf("a refused Replace changed the entry: %+v", got)
			}
		})
	}
}
