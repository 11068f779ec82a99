package index

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"slices"

	"github.com/crayfish-backup/crayfish/storage/pack"
)

// ErrCorrupt: an index segment is damaged, forged, sealed under another
// key, or contradicts what is already indexed. Errors wrapping it name what
// is wrong.
var ErrCorrupt = errors.New("index: corrupt")

// Location is where a blob is stored.
type Location struct {
	Pack      pack.ID       // id of the pack object (SHA-256 of its bytes)
	PackType  pack.BlobType // data or meta pack (selects the object prefix)
	PackSize  uint32        // size of the pack object in bytes; 0 if unknown
	Offset    uint32        // of the sealed record in the pack
	StoredLen uint32        // length of the sealed record
	RawLen    uint32        // length of the plaintext
	Type      pack.BlobType // blob type (bound into the record's AAD)
	Codec     pack.Codec    // payload codec (bound into the record's AAD)
}

// Entry returns the pack footer entry of blob id at l, for pack.OpenBlob.
func (l Location) Entry(id pack.ID) pack.Entry {
	return pack.Entry{ID: id, Type: l.Type, Codec: l.Codec, Offset: l.Offset, StoredLen: l.StoredLen, RawLen: l.RawLen}
}

// PackInfo describes one pack of the index.
type PackInfo struct {
	ID   pack.ID
	Type pack.BlobType
	Size uint32 // bytes; 0 if unknown
}

// entry is the compact in-memory form of one blob: 52 bytes.
type entry struct {
	id        pack.ID
	pack      uint32 // ordinal in Index.packs
	offset    uint32
	storedLen uint32
	rawLen    uint32
	typ       pack.BlobType
	codec     pack.Codec
}

const (
	blockShift = 12
	blockSize  = 1 << blockShift // entries per block (208 KiB)
	blockMask  = blockSize - 1
	minTable   = 64
)

// Index maps blob ids to their locations. Memory is about 60 bytes per
// blob: entries live in fixed-size blocks of compact 52-byte records, found
// through an open-addressing hash table of uint32 slots (keyed maphash of
// the whole id, so crafted ids cannot degrade it), and pack ids are stored
// once in a pack table.
//
// An Index is not safe for concurrent use when one goroutine mutates it;
// concurrent Has, Lookup and iteration are fine. The zero value is an
// empty index ready to use.
type Index struct {
	seed    maphash.Seed
	table   []uint32 // 0 = empty, else entry number + 1
	blocks  [][]entry
	n       int
	packs   []PackInfo
	packOrd map[pack.ID]uint32
}

// New returns an empty index.
func New() *Index {
	x := &Index{}
	x.init()
	return x
}

func (x *Index) init() {
	if x.table == nil {
		x.seed = maphash.MakeSeed()
		x.table = make([]uint32, minTable)
		x.packOrd = map[pack.ID]uint32{}
	}
}

func (x *Index) at(i uint32) *entry { return &x.blocks[i>>blockShift][i&blockMask] }

func (x *Index) hash(id *pack.ID) uint64 { return maphash.Comparable(x.seed, *id) }

// find returns the entry number of id, or -1.
func (x *Index) find(id *pack.ID) int {
	if x.n == 0 {
		return -1
	}
	mask := uint64(len(x.table) - 1)
	for s := x.hash(id) & mask; ; s = (s + 1) & mask {
		v := x.table[s]
		if v == 0 {
			return -1
		}
		if x.at(v-1).id == *id {
			return int(v - 1)
		}
	}
}

// Len returns the number of blobs.
func (x *Index) Len() int { return x.n }

// Has reports whether blob id is indexed.
func (x *Index) Has(id pack.ID) bool { return x.find(&id) >= 0 }

// Lookup returns the location of blob id.
func (x *Index) Lookup(id pack.ID) (Location, bool) {
	i := x.find(&id)
	if i < 0 {
		return Location{}, false
	}
	return x.location(x.at(uint32(i))), true
}

func (x *Index) location(e *entry) Location {
	p := &x.packs[e.pack]
	return Location{Pack: p.ID, PackType: p.Type, PackSize: p.Size, Offset: e.offset,
		StoredLen: e.storedLen, RawLen: e.rawLen, Type: e.typ, Codec: e.codec}
}

// pack returns the ordinal of p, registering it if new. A known pack may
// learn its size (when it was 0); a contradicting type or size is an error
// wrapping ErrCorrupt: pack ids are content hashes, so that cannot happen
// with sound index data.
func (x *Index) pack(p PackInfo) (uint32, error) {
	x.init()
	if ord, ok := x.packOrd[p.ID]; ok {
		q := &x.packs[ord]
		if q.Type != p.Type {
			return 0, fmt.Errorf("%w: pack %x listed as %v and %v", ErrCorrupt, p.ID[:8], q.Type, p.Type)
		}
		if p.Size != 0 && q.Size != p.Size {
			if q.Size != 0 {
				return 0, fmt.Errorf("%w: pack %x listed with sizes %d and %d", ErrCorrupt, p.ID[:8], q.Size, p.Size)
			}
			q.Size = p.Size
		}
		return ord, nil
	}
	if !p.Type.Valid() {
		return 0, fmt.Errorf("index: pack %x: unknown type %d", p.ID[:8], p.Type)
	}
	if len(x.packs) == 1<<32-1 {
		return 0, errors.New("index: too many packs")
	}
	ord := uint32(len(x.packs))
	x.packs = append(x.packs, p)
	x.packOrd[p.ID] = ord
	return ord, nil
}

// Add indexes blob id at loc, registering loc's pack. It reports whether
// the blob was new: an id already indexed keeps its first location (a
// blob stored twice is readable from either copy; the later copy is left
// for garbage collection), so callers control precedence by the order they
// add in. A pack seen before with another type or size gives an error
// wrapping ErrCorrupt, and nothing is added.
func (x *Index) Add(id pack.ID, loc Location) (bool, error) {
	ord, err := x.pack(PackInfo{ID: loc.Pack, Type: loc.PackType, Size: loc.PackSize})
	if err != nil {
		return false, err
	}
	return x.add(id, ord, loc.Offset, loc.StoredLen, loc.RawLen, loc.Type, loc.Codec)
}

// Replace points an already indexed blob at loc instead (a good copy
// replacing one recorded as damaged), or adds it. Errors as Add.
func (x *Index) Replace(id pack.ID, loc Location) error {
	ord, err := x.pack(PackInfo{ID: loc.Pack, Type: loc.PackType, Size: loc.PackSize})
	if err != nil {
		return err
	}
	if i := x.find(&id); i >= 0 {
		e := x.at(uint32(i))
		e.pack, e.offset, e.storedLen, e.rawLen, e.typ, e.codec = ord, loc.Offset, loc.StoredLen, loc.RawLen, loc.Type, loc.Codec
		return nil
	}
	_, err = x.add(id, ord, loc.Offset, loc.StoredLen, loc.RawLen, loc.Type, loc.Codec)
	return err
}

func (x *Index) add(id pack.ID, ord, off, stored, raw uint32, typ pack.BlobType, codec pack.Codec) (bool, error) {
	if x.find(&id) >= 0 {
		return false, nil
	}
	if x.n == 1<<32-2 {
		return false, errors.New("index: too many blobs")
	}
	if (x.n+1)*4 > len(x.table)*3 {
		x.grow()
	}
	if x.n>>blockShift == len(x.blocks) {
		c := blockSize
		if x.n == 0 {
			c = 16 // small indexes (a session's) stay small
		}
		x.blocks = append(x.blocks, make([]entry, 0, c))
	}
	b := &x.blocks[len(x.blocks)-1]
	*b = append(*b, entry{id: id, pack: ord, offset: off, storedLen: stored, rawLen: raw, typ: typ, codec: codec})
	x.insert(uint32(x.n))
	x.n++
	return true, nil
}

func (x *Index) insert(i uint32) {
	mask := uint64(len(x.table) - 1)
	s := x.hash(&x.at(i).id) & mask
	for x.table[s] != 0 {
		s = (s + 1) & mask
	}
	x.table[s] = i + 1
}

func (x *Index) grow() {
	x.table = make([]uint32, 2*len(x.table))
	for i := 0; i < x.n; i++ {
		x.insert(uint32(i))
	}
}

// AddPack indexes the entries of one pack (as returned by pack.Writer.Finish
// or pack.ReadFooter). It returns the number of blobs that were new.
func (x *Index) AddPack(p PackInfo, entries []pack.Entry) (int, error) {
	ord, err := x.pack(p)
	if err != nil {
		return 0, err
	}
	added := 0
	for _, e := range entries {
		ok, err := x.add(e.ID, ord, e.Offset, e.StoredLen, e.RawLen, e.Type, e.Codec)
		if err != nil {
			return added, err
		}
		if ok {
			added++
		}
	}
	return added, nil
}

// AddSegment indexes a decoded segment (its Supersedes list is the
// caller's business). It returns the number of blobs that were new.
func (x *Index) AddSegment(seg *Segment) (int, error) {
	ords := make([]uint32, len(seg.Packs))
	for i, p := range seg.Packs {
		ord, err := x.pack(p)
		if err != nil {
			return 0, err
		}
		ords[i] = ord
	}
	added := 0
	for _, e := range seg.Entries {
		if int64(e.PackOrd) >= int64(len(ords)) {
			return added, fmt.Errorf("%w: entry %x: pack ordinal %d out of range", ErrCorrupt, e.ID[:8], e.PackOrd)
		}
		ok, err := x.add(e.ID, ords[e.PackOrd], e.Offset, e.StoredLen, e.RawLen, e.Type, e.Codec)
		if err != nil {
			return added, err
		}
		if ok {
			added++
		}
	}
	return added, nil
}

// Merge adds every blob of other (in other's insertion order; blobs x
// already has keep their location) and returns the first conflict.
func (x *Index) Merge(other *Index) error {
	if other == nil || other == x {
		return nil
	}
	ords := make([]uint32, len(other.packs))
	for i, p := range other.packs {
		ord, err := x.pack(p)
		if err != nil {
			return err
		}
		ords[i] = ord
	}
	for i := 0; i < other.n; i++ {
		e := other.at(uint32(i))
		if _, err := x.add(e.id, ords[e.pack], e.offset, e.storedLen, e.rawLen, e.typ, e.codec); err != nil {
			return err
		}
	}
	return nil
}

// Packs returns the size of every indexed pack by id (0 where unknown).
func (x *Index) Packs() map[pack.ID]uint32 {
	m := make(map[pack.ID]uint32, len(x.packs))
	for _, p := range x.packs {
		m[p.ID] = p.Size
	}
	return m
}

// PackInfos returns every indexed pack, sorted by id.
func (x *Index) PackInfos() []PackInfo {
	ps := slices.Clone(x.packs)
	slices.SortFunc(ps, func(a, b PackInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return ps
}

// sortedOrder returns entry numbers sorted by blob id.
func (x *Index) sortedOrder() []uint32 {
	ord := make([]uint32, x.n)
	for i := range ord {
		ord[i] = uint32(i)
	}
	slices.SortFunc(ord, func(a, b uint32) int { return bytes.Compare(x.at(a).id[:], x.at(b).id[:]) })
	return ord
}

// All iterates over every blob in ascending id order. The index must not
// be modified during the iteration.
func (x *Index) All() iter.Seq2[pack.ID, Location] {
	return func(yield func(pack.ID, Location) bool) {
		for _, i := range x.sortedOrder() {
			e := x.at(i)
			if !yield(e.id, x.location(e)) {
				return
			}
		}
	}
}
