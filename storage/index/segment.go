package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	objheader "github.com/crayfish-backup/crayfish/storage/internal/header"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// Segment format constants (see the package documentation).
const (
	Version         = objheader.Version
	HeaderSize      = objheader.Size
	SegmentPackSize = 40 // one pack table row
	EntrySize       = 52 // one entry
	countsSize      = 12

	// MaxSegmentSize is the encoded size SegmentsFrom keeps segments under.
	MaxSegmentSize = 8 << 20
	// MaxPayload caps the decompressed payload DecodeSegment accepts.
	MaxPayload = 256 << 20

	// targetPayload is the payload SegmentsFrom fills a segment up to: it
	// leaves 256 KiB under MaxSegmentSize for the AEAD, zstd framing of
	// incompressible data (~0.01%) and ~7,000 Supersedes ids a caller may add.
	targetPayload = MaxSegmentSize - 256<<10

	headerMagic   = "CFIX"
	aadTag        = "crayfish/v1/index"
	flagEncrypted = objheader.FlagEncrypted
)

// SegmentEntry is one blob of a segment; PackOrd indexes Segment.Packs.
type SegmentEntry struct {
	ID        pack.ID
	PackOrd   uint32
	Offset    uint32
	StoredLen uint32
	RawLen    uint32
	Type      pack.BlobType
	Codec     pack.Codec
}

// Segment is the decoded content of one index object: the packs it
// describes, its blobs (sorted by id, unique) and the ids of older segments
// it replaces.
type Segment struct {
	Packs      []PackInfo
	Entries    []SegmentEntry
	Supersedes []pack.ID
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	zOnce.Do(func() {
		var err error
		// Index segments are metadata: SpeedDefault, as recommended; the
		// AEAD covers integrity, so no zstd checksum. Segments are written
		// a few at a time: one encoder with a 1 MiB window (the default
		// kept two with 16 MiB of history each for the agent's lifetime).
		zEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		if err != nil {
			panic(err)
		}
		zDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxPayload))
		if err != nil {
			panic(err)
		}
	})
	return zEnc, zDec
}

func header(encrypted bool) []byte { return objheader.New(headerMagic, encrypted) }

func aad(h []byte) []byte { return objheader.AAD(h[:HeaderSize], aadTag) }

// EncodeSegment encodes and seals seg with c (the repository's "index"
// cipher or crypto.NoEncryption()). Entries need not be sorted: they are
// written sorted by id (seg is not modified); when an id occurs more than
// once the first occurrence is kept (later copies become unreferenced
// records for garbage collection). It refuses a segment DecodeSegment would
// reject.
func EncodeSegment(c *crypto.Cipher, seg *Segment) ([]byte, error) {
	if c == nil {
		return nil, errors.New("index: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
	entries := seg.Entries
	cmpID := func(a, b SegmentEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) }
	if !slices.IsSortedFunc(entries, cmpID) {
		entries = slices.Clone(entries)
		slices.SortStableFunc(entries, cmpID)
	}
	entries = slices.CompactFunc(slices.Clone(entries), func(a, b SegmentEntry) bool { return a.ID == b.ID })
	size := uint64(countsSize) + uint64(len(seg.Supersedes))*32 + uint64(len(seg.Packs))*SegmentPackSize + uint64(len(entries))*EntrySize
	if size > MaxPayload {
		return nil, fmt.Errorf("index: segment payload of %d bytes exceeds %d", size, MaxPayload)
	}
	p := make([]byte, 0, size)
	p = binary.LittleEndian.AppendUint32(p, uint32(len(seg.Packs)))
	p = binary.LittleEndian.AppendUint32(p, uint32(len(entries)))
	p = binary.LittleEndian.AppendUint32(p, uint32(len(seg.Supersedes)))
	for _, id := range seg.Supersedes {
		p = append(p, id[:]...)
	}
	for _, pk := range seg.Packs {
		p = append(p, pk.ID[:]...)
		p = append(p, byte(pk.Type), 0, 0, 0)
		p = binary.LittleEndian.AppendUint32(p, pk.Size)
	}
	for _, e := range entries {
		p = append(p, e.ID[:]...)
		p = binary.LittleEndian.AppendUint32(p, e.PackOrd)
		p = binary.LittleEndian.AppendUint32(p, e.Offset)
		p = binary.LittleEndian.AppendUint32(p, e.StoredLen)
		p = binary.LittleEndian.AppendUint32(p, e.RawLen)
		p = append(p, byte(e.Type), byte(e.Codec), 0, 0)
	}
	// Never write what the reader would refuse.
	if _, err := parsePayload(c, p); err != nil {
		return nil, fmt.Errorf("index: refusing to encode an invalid segment: %w", err)
	}
	enc, _ := codecs()
	h := header(c.Encrypted())
	z := enc.EncodeAll(p, nil)
	return c.Seal(h, z, aad(h)), nil
}

// DecodeSegment authenticates, decompresses and validates one index
// object. Failures wrap ErrCorrupt (and crypto.ErrAuth when authentication
// failed).
func DecodeSegment(c *crypto.Cipher, data []byte) (*Segment, error) {
	if c == nil {
		return nil, errors.New("index: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
	if len(data) < HeaderSize {
		return nil, corrupt("segment of %d bytes has no header", len(data))
	}
	h := data[:HeaderSize]
	if string(h[:4]) != headerMagic {
		return nil, corrupt("bad magic %q (want %q)", h[:4], headerMagic)
	}
	if h[4] != Version {
		return nil, corrupt("unsupported index segment version %d (this build reads %d)", h[4], Version)
	}
	if h[5]&^flagEncrypted != 0 {
		return nil, corrupt("unknown header flags %#x", h[5])
	}
	if enc := h[5]&flagEncrypted != 0; enc != c.Encrypted() {
		return nil, corrupt("segment encrypted=%v but the repository cipher encrypted=%v", enc, c.Encrypted())
	}
	for _, b := range h[6:] {
		if b != 0 {
			return nil, corrupt("header reserved bytes not zero")
		}
	}
	z, err := c.Open(nil, data[HeaderSize:], aad(h))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	var zh zstd.Header
	if err := zh.Decode(z); err != nil {
		return nil, corrupt("zstd frame header: %v", err)
	}
	if zh.HasFCS && zh.FrameContentSize > MaxPayload {
		return nil, corrupt("payload of %d bytes exceeds %d", zh.FrameContentSize, MaxPayload)
	}
	_, dec := codecs()
	var dst []byte
	if zh.HasFCS {
		dst = make([]byte, 0, zh.FrameContentSize)
	}
	p, err := dec.DecodeAll(z, dst)
	if err != nil {
		return nil, corrupt("zstd: %v", err)
	}
	return parsePayload(c, p)
}

// parsePayload decodes and validates a segment payload.
func parsePayload(c *crypto.Cipher, p []byte) (*Segment, error) {
	if len(p) < countsSize {
		return nil, corrupt("payload of %d bytes has no counts", len(p))
	}
	np := binary.LittleEndian.Uint32(p[0:])
	ne := binary.LittleEndian.Uint32(p[4:])
	ns := binary.LittleEndian.Uint32(p[8:])
	want := uint64(countsSize) + 32*uint64(ns) + SegmentPackSize*uint64(np) + EntrySize*uint64(ne)
	if want != uint64(len(p)) {
		return nil, corrupt("counts (%d packs, %d entries, %d superseded) need %d bytes, payload has %d", np, ne, ns, want, len(p))
	}
	seg := &Segment{
		Supersedes: make([]pack.ID, ns),
		Packs:      make([]PackInfo, np),
		Entries:    make([]SegmentEntry, ne),
	}
	p = p[countsSize:]
	for i := range seg.Supersedes {
		copy(seg.Supersedes[i][:], p[:32])
		p = p[32:]
	}
	seen := make(map[pack.ID]struct{}, np)
	for i := range seg.Packs {
		b := p[:SegmentPackSize]
		p = p[SegmentPackSize:]
		pk := PackInfo{Type: pack.BlobType(b[32]), Size: binary.LittleEndian.Uint32(b[36:])}
		copy(pk.ID[:], b[:32])
		switch {
		case !pk.Type.Valid():
			return nil, corrupt("pack %d: unknown type %d", i, pk.Type)
		case b[33] != 0 || b[34] != 0 || b[35] != 0:
			return nil, corrupt("pack %d: padding not zero", i)
		case pk.Size < pack.HeaderSize+pack.TrailerSize || pk.Size > pack.MaxSize:
			return nil, corrupt("pack %d: size %d out of range [%d, %d]", i, pk.Size, pack.HeaderSize+pack.TrailerSize, pack.MaxSize)
		}
		if _, dup := seen[pk.ID]; dup {
			return nil, corrupt("pack %x listed twice", pk.ID[:8])
		}
		seen[pk.ID] = struct{}{}
		seg.Packs[i] = pk
	}
	// The smallest footer of a pack holding at least one record.
	minTail := int64(pack.TrailerSize + c.Overhead() + 4 + pack.EntrySize)
	for i := range seg.Entries {
		b := p[:EntrySize]
		p = p[EntrySize:]
		e := SegmentEntry{
			PackOrd:   binary.LittleEndian.Uint32(b[32:]),
			Offset:    binary.LittleEndian.Uint32(b[36:]),
			StoredLen: binary.LittleEndian.Uint32(b[40:]),
			RawLen:    binary.LittleEndian.Uint32(b[44:]),
			Type:      pack.BlobType(b[48]),
			Codec:     pack.Codec(b[49]),
		}
		copy(e.ID[:], b[:32])
		if i > 0 && bytes.Compare(seg.Entries[i-1].ID[:], e.ID[:]) >= 0 {
			return nil, corrupt("entry %d: ids not sorted and unique", i)
		}
		if b[50] != 0 || b[51] != 0 {
			return nil, corrupt("entry %d: padding not zero", i)
		}
		if e.PackOrd >= np {
			return nil, corrupt("entry %d: pack ordinal %d out of range (%d packs)", i, e.PackOrd, np)
		}
		pe := pack.Entry{ID: e.ID, Type: e.Type, Codec: e.Codec, Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen}
		if err := pe.Validate(c); err != nil {
			return nil, corrupt("entry %d: %v", i, err)
		}
		if e.Offset < pack.HeaderSize || pe.End() > int64(seg.Packs[e.PackOrd].Size)-minTail {
			return nil, corrupt("entry %d: record [%d, %d) outside the records of its %d-byte pack",
				i, e.Offset, pe.End(), seg.Packs[e.PackOrd].Size)
		}
		seg.Entries[i] = e
	}
	return seg, nil
}

// SegmentsFrom splits the content of idx (typically one session's
// additions) into segments that each encode to at most MaxSegmentSize
// bytes (leaving room for a few thousand Supersedes ids) and hold at most
// maxEntries blobs (maxEntries ≤ 0: no count limit). Blobs are grouped by
// pack, so each segment lists few packs; within a segment they are sorted
// by id. It returns nil for an empty index. Every pack must have a known
// size (added with PackSize or PackInfo.Size set), or EncodeSegment will
// refuse the segment.
func SegmentsFrom(idx *Index, maxEntries int) []*Segment {
	if idx == nil || idx.n == 0 {
		return nil
	}
	order := make([]uint32, idx.n)
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int {
		ea, eb := idx.at(a), idx.at(b)
		if c := cmp.Compare(ea.pack, eb.pack); c != 0 {
			return c
		}
		return cmp.Compare(ea.offset, eb.offset)
	})
	var out []*Segment
	var seg *Segment
	var ords map[uint32]uint32 // index pack ordinal → segment pack ordinal
	var size int
	flush := func() {
		if seg != nil {
			slices.SortFunc(seg.Entries, func(a, b SegmentEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
			out = append(out, seg)
		}
		seg, ords, size = &Segment{}, map[uint32]uint32{}, countsSize
	}
	flush()
	for _, i := range order {
		e := idx.at(i)
		_, known := ords[e.pack]
		need := EntrySize
		if !known {
			need += SegmentPackSize
		}
		if len(seg.Entries) > 0 && (size+need > targetPayload || (maxEntries > 0 && len(seg.Entries) >= maxEntries)) {
			flush()
			known = false
			need = EntrySize + SegmentPackSize
		}
		if !known {
			ords[e.pack] = uint32(len(seg.Packs))
			seg.Packs = append(seg.Packs, idx.packs[e.pack])
		}
		seg.Entries = append(seg.Entries, SegmentEntry{ID: e.id, PackOrd: ords[e.pack], Offset: e.offset,
			StoredLen: e.storedLen, RawLen: e.rawLen, Type: e.typ, Codec: e.codec})
		size += need
	}
	flush()
	return out
}
