package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
)

// ID is a SHA-256 content address: a blob id (SHA-256 of the blob's
// plaintext) or a pack id. It is the unnamed type [32]byte, so values of
// storage.ObjectID (declared as [32]byte) are assignable to and from it
// without conversion. This package cannot import package storage, which
// imports it.
type ID = [sha256.Size]byte

// BlobType separates file content from metadata; the two live in separate packs.
type BlobType uint8

const (
	BlobData BlobType = 0 // file content chunks
	BlobMeta BlobType = 1 // file lists and other metadata
)

// Valid reports whether t is a known blob type.
func (t BlobType) Valid() bool { return t == BlobData || t == BlobMeta }

func (t BlobType) String() string {
	switch t {
	case BlobData:
		return "data"
	case BlobMeta:
		return "meta"
	}
	return fmt.Sprintf("BlobType(%d)", uint8(t))
}

// Codec is how a record's payload encodes the blob's plaintext.
type Codec uint8

const (
	CodecRaw  Codec = 0 // payload = plaintext
	CodecZstd Codec = 1 // payload = one zstd frame (no checksum) of the plaintext
)

// Valid reports whether c is a known codec.
func (c Codec) Valid() bool { return c == CodecRaw || c == CodecZstd }

func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// Format constants (see the package documentation).
const (
	Version         = header.Version
	HeaderSize      = header.Size
	TrailerSize     = 16
	EntrySize       = 48 // one footer entry
	footerCountSize = 4

	// RecordOverhead bounds what one blob adds to a pack beyond its
	// plaintext length: the AEAD overhead (when encrypted) plus its footer
	// entry. A record is never longer than its plaintext plus the AEAD
	// overhead, because incompressible blobs are stored raw.
	RecordOverhead = crypto.Overhead + EntrySize

	// TargetSize is the soft pack size: callers close a pack once Size()
	// reaches it.
	TargetSize = 12 << 20
	// MaxSize is the hard pack size: Add refuses a blob that would make the
	// finished pack larger, unless the pack is empty. A pack then stays one
	// PUT below the 16 MiB multipart/chunk thresholds of S3 and GCS.
	MaxSize = 16<<20 - 64<<10
	// MaxBlobSize is the largest plaintext a blob may have (chunks are
	// 4 MiB; metadata blobs up to 8 MiB, plus slack).
	MaxBlobSize = 8<<20 + 4<<10

	// TailReadSize is how many bytes at the end of a pack readers fetch
	// first: enough for the trailer and a footer of ~1,360 entries. If
	// ParseTrailer reports a larger footer, read FooterReadSize bytes.
	TailReadSize = 64 << 10

	maxEntries = MaxSize / EntrySize // more cannot fit in a pack
)

const (
	headerMagic   = "CFPK"
	trailerMagic  = "KPFC"
	blobAADTag    = "crayfish/v1/blob"
	footerAADTag  = "crayfish/v1/footer"
	flagEncrypted = header.FlagEncrypted
)

// Errors.
var (
	// ErrCorrupt: the pack bytes are damaged, truncated, forged, or were
	// sealed under another key. Errors wrapping it name what is wrong.
	ErrCorrupt = errors.New("pack: corrupt")
	// ErrPackFull: Add refused a blob because the pack would exceed MaxSize.
	ErrPackFull = errors.New("pack: full")
	// ErrBlobTooLarge: the blob's plaintext exceeds MaxBlobSize.
	ErrBlobTooLarge = errors.New("pack: blob larger than MaxBlobSize")
	// ErrShortTail: ReadFooter was given fewer tail bytes than the footer
	// needs; read FooterReadSize(footerLen) bytes and call it again.
	ErrShortTail = errors.New("pack: tail too short for the footer")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry describes one blob of a pack (one footer entry).
type Entry struct {
	ID        ID       // SHA-256 of the plaintext
	Type      BlobType // data or meta
	Codec     Codec    // how the payload encodes the plaintext
	Offset    uint32   // of the sealed record from the start of the pack
	StoredLen uint32   // length of the sealed record
	RawLen    uint32   // length of the plaintext
}

// End is the offset just past the record.
func (e Entry) End() int64 { return int64(e.Offset) + int64(e.StoredLen) }

// Header returns the 16-byte header of a v1 pack. A v1 header is fully
// determined by the encryption flag, so readers that fetch only a pack's
// tail can pass Header(c.Encrypted()) to ReadFooter.
func Header(encrypted bool) []byte { return header.New(headerMagic, encrypted) }

// FooterReadSize is how many bytes at the end of a pack hold the footer and
// trailer, given the footerLen from ParseTrailer.
func FooterReadSize(footerLen uint32) int64 { return int64(footerLen) + TrailerSize }

func footerLen(overhead, count int) int { return overhead + footerCountSize + EntrySize*count }

func blobAAD(id ID, t BlobType, c Codec) [len(blobAADTag) + 32 + 2]byte {
	var a [len(blobAADTag) + 32 + 2]byte
	copy(a[:], blobAADTag)
	copy(a[len(blobAADTag):], id[:])
	a[len(blobAADTag)+32] = byte(t)
	a[len(blobAADTag)+33] = byte(c)
	return a
}

func footerAAD(h []byte) []byte { return header.AAD(h, footerAADTag) }

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// zstd state: single-threaded encoders, at most one per core in use and
// kept (EncodeAll from many workers runs in parallel), one shared decoder.
// Compression is CPU work: more encoders than cores would only hold more
// memory, as each keeps its history window and output buffer (over 8 MiB
// after a 4 MiB chunk; with 8 savers, unbounded encoders held 70 MB).
type encoder struct {
	enc *zstd.Encoder
	buf []byte
}

var (
	encoderSlots = make(chan struct{}, runtime.GOMAXPROCS(0))
	encoderFree  = make(chan *encoder, cap(encoderSlots))
)

// getEncoder waits for a slot and returns an encoder; putEncoder gives
// both back.
func getEncoder() *encoder {
	encoderSlots <- struct{}{}
	select {
	case e := <-encoderFree:
		return e
	default:
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err) // options are constant
	}
	return &encoder{enc: enc}
}

func putEncoder(e *encoder) {
	select {
	case encoderFree <- e:
	default:
	}
	<-encoderSlots
}

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
)

func getDecoder() *zstd.Decoder {
	decoderOnce.Do(func() {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(64<<20),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		decoder = d
	})
	return decoder
}

// Writer builds one pack in memory. It is not safe for concurrent use; run
// one Writer per worker.
type Writer struct {
	c        *crypto.Cipher
	header   []byte
	buf      []byte
	entries  []Entry
	err      error // sticky setup error
	finished bool
}

// NewWriter starts a pack sealed with c (the repository's "data" cipher,
// or crypto.NoEncryption()). encrypted is the repository's mode and must
// agree with c; a mismatch makes Add and Finish fail.
func NewWriter(c *crypto.Cipher, encrypted bool) *Writer {
	return NewWriterBuffer(c, encrypted, make([]byte, 0, 1<<20))
}

// NewWriterBuffer is NewWriter building the pack in buf[:0] (callers that
// pool pack-sized buffers avoid re-growing one per pack; a buffer of
// BufferSize never grows).
func NewWriterBuffer(c *crypto.Cipher, encrypted bool, buf []byte) *Writer {
	w := &Writer{c: c, header: Header(encrypted)}
	switch {
	case c == nil:
		w.err = errors.New("pack: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	case c.Encrypted() != encrypted:
		w.err = fmt.Errorf("pack: cipher encrypts=%v but the pack is to be encrypted=%v", c.Encrypted(), encrypted)
	}
	w.buf = append(buf[:0], w.header...)
	return w
}

// BufferSize is a capacity that holds any pack: records up to MaxSize plus
// the sealed footer and trailer appended by Finish.
const BufferSize = MaxSize + 64<<10

// Len returns the number of blobs added.
func (w *Writer) Len() int { return len(w.entries) }

// Size returns the size the pack would have if finished now: header,
// records, footer and trailer.
func (w *Writer) Size() int {
	if w.finished {
		return 0
	}
	return len(w.buf) + footerLen(w.overhead(), len(w.entries)) + TrailerSize
}

func (w *Writer) overhead() int {
	if w.c == nil {
		return 0
	}
	return w.c.Overhead()
}

// Record is one blob compressed and sealed, ready to be appended to a
// pack. Sealing is the expensive part (zstd and AES-GCM): callers do it in
// parallel, outside whatever serializes access to the pack.
type Record struct {
	ID     ID
	Type   BlobType
	Codec  Codec
	RawLen uint32
	Sealed []byte
}

// SealRecord compresses (zstd fastest, kept only if it saves at least 3%)
// and seals plaintext as blob id of type typ, appending the sealed bytes
// to dst[:0]. The caller guarantees SHA-256(plaintext) == id. It refuses a
// blob larger than MaxBlobSize (ErrBlobTooLarge).
func SealRecord(c *crypto.Cipher, dst []byte, id ID, typ BlobType, plaintext []byte) (Record, error) {
	if c == nil {
		return Record{}, errors.New("pack: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
	if !typ.Valid() {
		return Record{}, fmt.Errorf("pack: unknown blob type %d", typ)
	}
	if len(plaintext) > MaxBlobSize {
		return Record{}, fmt.Errorf("%w: %d bytes > %d", ErrBlobTooLarge, len(plaintext), MaxBlobSize)
	}
	codec := CodecRaw
	payload := plaintext
	if len(plaintext) > 0 {
		enc := getEncoder()
		defer putEncoder(enc)
		enc.buf = enc.enc.EncodeAll(plaintext, enc.buf[:0])
		if 100*len(enc.buf) < 97*len(plaintext) {
			codec, payload = CodecZstd, enc.buf
		}
	}
	aad := blobAAD(id, typ, codec)
	sealed := c.Seal(slices.Grow(dst[:0], len(payload)+c.Overhead()), payload, aad[:])
	return Record{ID: id, Type: typ, Codec: codec, RawLen: uint32(len(plaintext)), Sealed: sealed}, nil
}

// Add seals and appends one blob (SealRecord then AddRecord). It returns
// the blob's footer entry. It refuses a blob larger than MaxBlobSize
// (ErrBlobTooLarge) and, unless the pack is empty, one that would make it
// larger than MaxSize (ErrPackFull); a refusal leaves the writer usable.
func (w *Writer) Add(id ID, typ BlobType, plaintext []byte) (Entry, error) {
	if w.err != nil {
		return Entry{}, w.err
	}
	rec, err := SealRecord(w.c, nil, id, typ, plaintext)
	if err != nil {
		return Entry{}, err
	}
	return w.AddRecord(rec)
}

// Fits reports whether a record of sealedLen bytes can be added without
// exceeding MaxSize (an empty pack takes any record).
func (w *Writer) Fits(sealedLen int) bool {
	return len(w.entries) == 0 || w.Size()+sealedLen+EntrySize <= MaxSize
}

// AddRecord appends a record sealed with this writer's cipher (a copy).
func (w *Writer) AddRecord(rec Record) (Entry, error) {
	if w.err != nil {
		return Entry{}, w.err
	}
	if w.finished {
		return Entry{}, errors.New("pack: Add after Finish")
	}
	if !w.Fits(len(rec.Sealed)) {
		return Entry{}, fmt.Errorf("%w: %d + %d bytes > %d", ErrPackFull, w.Size(), len(rec.Sealed)+EntrySize, MaxSize)
	}
	off := len(w.buf)
	w.buf = append(w.buf, rec.Sealed...)
	e := Entry{ID: rec.ID, Type: rec.Type, Codec: rec.Codec, Offset: uint32(off),
		StoredLen: uint32(len(rec.Sealed)), RawLen: rec.RawLen}
	w.entries = append(w.entries, e)
	return e, nil
}

// Finish appends the sealed footer and the trailer and returns the whole
// pack and its entries (in offset order). The caller names the pack object
// by the SHA-256 of the returned bytes. The writer cannot be used
// afterwards and no longer references the bytes.
func (w *Writer) Finish() ([]byte, []Entry, error) {
	if w.err != nil {
		return nil, nil, w.err
	}
	if w.finished {
		return nil, nil, errors.New("pack: Finish called twice")
	}
	plain := make([]byte, footerCountSize, footerCountSize+EntrySize*len(w.entries))
	binary.LittleEndian.PutUint32(plain, uint32(len(w.entries)))
	for _, e := range w.entries {
		plain = appendEntry(plain, e)
	}
	fstart := len(w.buf)
	buf := w.c.Seal(w.buf, plain, footerAAD(w.header))
	sealed := buf[fstart:]
	var t [TrailerSize]byte
	binary.LittleEndian.PutUint32(t[0:], uint32(len(sealed)))
	binary.LittleEndian.PutUint32(t[4:], uint32(len(w.entries)))
	binary.LittleEndian.PutUint32(t[8:], crc32.Checksum(sealed, castagnoli))
	copy(t[12:], trailerMagic)
	buf = append(buf, t[:]...)
	entries := w.entries
	w.buf, w.entries, w.finished = nil, nil, true
	return buf, entries, nil
}

func appendEntry(b []byte, e Entry) []byte {
	b = append(b, e.ID[:]...)
	b = append(b, byte(e.Type), byte(e.Codec), 0, 0)
	b = binary.LittleEndian.AppendUint32(b, e.Offset)
	b = binary.LittleEndian.AppendUint32(b, e.StoredLen)
	return binary.LittleEndian.AppendUint32(b, e.RawLen)
}

// ParseTrailer decodes the 16-byte trailer at the end of tail (the last
// bytes of a pack). It checks the magic and that footerLen is the length
// of a footer of count entries, sealed or not, but not the crc.
func ParseTrailer(tail []byte) (footerLen, count, crc uint32, err error) {
	if len(tail) < TrailerSize {
		return 0, 0, 0, corrupt("%d bytes cannot hold the %d-byte trailer", len(tail), TrailerSize)
	}
	t := tail[len(tail)-TrailerSize:]
	if string(t[12:]) != trailerMagic {
		return 0, 0, 0, corrupt("bad trailer magic %q (want %q)", t[12:], trailerMagic)
	}
	footerLen = binary.LittleEndian.Uint32(t[0:])
	count = binary.LittleEndian.Uint32(t[4:])
	crc = binary.LittleEndian.Uint32(t[8:])
	if count > maxEntries {
		return 0, 0, 0, corrupt("trailer claims %d blobs, more than fit in a pack", count)
	}
	plain := uint32(footerCountSize + EntrySize*int(count))
	if footerLen != plain && footerLen != plain+crypto.Overhead {
		return 0, 0, 0, corrupt("trailer footer length %d does not fit %d entries", footerLen, count)
	}
	return footerLen, count, crc, nil
}

// ReadFooter authenticates and validates the footer of a pack of packSize
// bytes and returns its entries in offset order. packTail holds the last
// bytes of the pack: at least FooterReadSize(footerLen) of them (else the
// error wraps ErrShortTail), typically the last min(packSize, TailReadSize)
// bytes. header is the pack's first 16 bytes, or nil to assume the v1
// header for c (Header(c.Encrypted())), which saves a ranged read; a pack
// with any other header then fails to authenticate when encrypted.
//
// Every check failure wraps ErrCorrupt: the header (magic, version,
// encryption flag matching c, reserved bytes), the trailer, the crc32c of
// the sealed footer, its authentication, the entry count, and each entry
// (known type and codec, zero reserved bytes, sorted by offset,
// non-overlapping, inside [16, packSize-16-footerLen), rawLen ≤
// MaxBlobSize, and lengths consistent with the codec).
func ReadFooter(c *crypto.Cipher, header []byte, packTail []byte, packSize int64) ([]Entry, error) {
	if c == nil {
		return nil, errors.New("pack: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
	if int64(len(packTail)) > packSize {
		return nil, fmt.Errorf("pack: tail of %d bytes is longer than the pack (%d bytes)", len(packTail), packSize)
	}
	if header == nil {
		header = Header(c.Encrypted())
	} else if err := checkHeader(c, header); err != nil {
		return nil, err
	}
	fl, count, crc, err := ParseTrailer(packTail)
	if err != nil {
		return nil, err
	}
	overhead := c.Overhead()
	if int(fl) != footerLen(overhead, int(count)) {
		return nil, corrupt("footer length %d does not fit %d entries under this cipher (encrypted=%v)", fl, count, c.Encrypted())
	}
	if packSize < HeaderSize+FooterReadSize(fl) {
		return nil, corrupt("pack of %d bytes cannot hold a header and a %d-byte footer", packSize, fl)
	}
	if int64(len(packTail)) < FooterReadSize(fl) {
		return nil, fmt.Errorf("%w: have %d bytes, need %d", ErrShortTail, len(packTail), FooterReadSize(fl))
	}
	end := len(packTail) - TrailerSize
	sealed := packTail[end-int(fl) : end]
	if got := crc32.Checksum(sealed, castagnoli); got != crc {
		return nil, corrupt("footer crc32c %08x, trailer says %08x", got, crc)
	}
	plain, err := c.Open(nil, sealed, footerAAD(header))
	if err != nil {
		return nil, fmt.Errorf("%w: footer: %w", ErrCorrupt, err)
	}
	if len(plain) != footerLen(0, int(count)) {
		return nil, corrupt("footer plaintext is %d bytes, want %d", len(plain), footerLen(0, int(count)))
	}
	if n := binary.LittleEndian.Uint32(plain); n != count {
		return nil, corrupt("footer lists %d blobs, trailer says %d", n, count)
	}
	limit := packSize - FooterReadSize(fl) // records end before the footer
	entries := make([]Entry, count)
	prevEnd := int64(HeaderSize)
	for i := range entries {
		b := plain[footerCountSize+i*EntrySize:][:EntrySize]
		e := Entry{
			Type:      BlobType(b[32]),
			Codec:     Codec(b[33]),
			Offset:    binary.LittleEndian.Uint32(b[36:]),
			StoredLen: binary.LittleEndian.Uint32(b[40:]),
			RawLen:    binary.LittleEndian.Uint32(b[44:]),
		}
		copy(e.ID[:], b[:32])
		if err := checkEntry(e, overhead); err != nil {
			return nil, fmt.Errorf("%w (footer entry %d)", err, i)
		}
		if b[34] != 0 || b[35] != 0 {
			return nil, corrupt("footer entry %d: reserved bytes not zero", i)
		}
		if int64(e.Offset) < prevEnd {
			return nil, corrupt("footer entry %d: offset %d overlaps the previous record or the header (ends at %d)", i, e.Offset, prevEnd)
		}
		if e.End() > limit {
			return nil, corrupt("footer entry %d: record [%d, %d) runs into the footer at %d", i, e.Offset, e.End(), limit)
		}
		prevEnd = e.End()
		entries[i] = e
	}
	return entries, nil
}

func checkHeader(c *crypto.Cipher, h []byte) error {
	if len(h) != HeaderSize {
		return corrupt("header is %d bytes, want %d", len(h), HeaderSize)
	}
	if string(h[:4]) != headerMagic {
		return corrupt("bad header magic %q (want %q)", h[:4], headerMagic)
	}
	if h[4] != Version {
		return corrupt("unsupported pack version %d (this build reads %d)", h[4], Version)
	}
	if h[5]&^flagEncrypted != 0 {
		return corrupt("unknown header flags %#x", h[5])
	}
	if enc := h[5]&flagEncrypted != 0; enc != c.Encrypted() {
		return corrupt("pack encrypted=%v but the repository cipher encrypted=%v", enc, c.Encrypted())
	}
	for _, b := range h[6:] {
		if b != 0 {
			return corrupt("header reserved bytes not zero")
		}
	}
	return nil
}

// Validate checks what can be checked of one entry without its pack: known
// type and codec, rawLen ≤ MaxBlobSize, and lengths consistent with the
// codec under c (raw: storedLen = rawLen + overhead; zstd: a non-empty
// payload of at most rawLen bytes). Failures wrap ErrCorrupt.
func (e Entry) Validate(c *crypto.Cipher) error { return checkEntry(e, c.Overhead()) }

func checkEntry(e Entry, overhead int) error {
	if !e.Type.Valid() {
		return corrupt("blob %x: unknown type %d", e.ID[:8], e.Type)
	}
	if e.RawLen > MaxBlobSize {
		return corrupt("blob %x: raw length %d exceeds %d", e.ID[:8], e.RawLen, MaxBlobSize)
	}
	if int64(e.StoredLen) < int64(overhead) {
		return corrupt("blob %x: stored length %d is shorter than the AEAD overhead", e.ID[:8], e.StoredLen)
	}
	payload := int64(e.StoredLen) - int64(overhead)
	switch e.Codec {
	case CodecRaw:
		if payload != int64(e.RawLen) {
			return corrupt("blob %x: raw record holds %d bytes, raw length says %d", e.ID[:8], payload, e.RawLen)
		}
	case CodecZstd:
		if e.RawLen == 0 || payload == 0 || payload > int64(e.RawLen) {
			return corrupt("blob %x: zstd payload of %d bytes for %d raw bytes", e.ID[:8], payload, e.RawLen)
		}
	default:
		return corrupt("blob %x: unknown codec %d", e.ID[:8], e.Codec)
	}
	return nil
}

// OpenBlob authenticates, decrypts and decodes one sealed record (the
// e.StoredLen bytes at e.Offset) and returns the plaintext after checking
// its length against e.RawLen and its SHA-256 against e.ID. Failures wrap
// ErrCorrupt (and crypto.ErrAuth when authentication failed). The result
// never aliases sealed.
func OpenBlob(c *crypto.Cipher, e Entry, sealed []byte) ([]byte, error) {
	return openBlob(c, e, sealed, nil)
}

// OpenBlobInPlace is OpenBlob decrypting into sealed's own memory: the
// caller gives sealed up (its bytes are overwritten, on failure too) and
// saves a copy of the blob's size.
func OpenBlobInPlace(c *crypto.Cipher, e Entry, sealed []byte) ([]byte, error) {
	return openBlob(c, e, sealed, sealed[:0])
}

func openBlob(c *crypto.Cipher, e Entry, sealed, dst []byte) ([]byte, error) {
	if c == nil {
		return nil, errors.New("pack: nil cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
	if len(sealed) != int(e.StoredLen) {
		return nil, corrupt("blob %x: record is %d bytes, entry says %d", e.ID[:8], len(sealed), e.StoredLen)
	}
	if err := checkEntry(e, c.Overhead()); err != nil {
		return nil, err
	}
	aad := blobAAD(e.ID, e.Type, e.Codec)
	payload, err := c.Open(dst, sealed, aad[:])
	if err != nil {
		return nil, fmt.Errorf("%w: blob %x: %w", ErrCorrupt, e.ID[:8], err)
	}
	plain := payload
	if e.Codec == CodecZstd {
		plain, err = getDecoder().DecodeAll(payload, make([]byte, 0, e.RawLen))
		if err != nil {
			return nil, corrupt("blob %x: zstd: %v", e.ID[:8], err)
		}
	}
	if len(plain) != int(e.RawLen) {
		return nil, corrupt("blob %x: decoded %d bytes, entry says %d", e.ID[:8], len(plain), e.RawLen)
	}
	if sha256.Sum256(plain) != e.ID {
		return nil, corrupt("blob %x: plaintext does not hash to its id", e.ID[:8])
	}
	return plain, nil
}
