package storage

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Codec bytes: the first byte of every data object says how the rest is encoded.
const (
	codecRaw  byte = 0 // payload is the plaintext
	codecZstd byte = 1 // payload is one or more zstd frames of the plaintext
)

const (
	// probeSize is how much of a source Put buffers before choosing a codec.
	// An object that fits is compressed in one piece and stored raw if that
	// does not make it smaller; a larger one is streamed, with the choice made
	// on this prefix.
	probeSize = 4 << 20

	// decoderMaxMemory caps the zstd window (streaming) and the decoded size
	// (single-shot) the decoder accepts, so a hostile frame header cannot make
	// it allocate gigabytes. Everything this package writes uses windows of at
	// most 8 MiB.
	decoderMaxMemory = 64 << 20
)

var (
	// blockEncoder compresses whole buffers (EncodeAll is safe for concurrent
	// use; at most GOMAXPROCS run at once).
	blockEncoder = sync.OnceValue(func() *zstd.Encoder {
		return mustEncoder(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
	})
	// manifestEncoder compresses manifests: small, read often, worth the
	// better ratio of the default level.
	manifestEncoder = sync.OnceValue(func() *zstd.Encoder {
		return mustEncoder(zstd.WithEncoderLevel(zstd.SpeedDefault))
	})

	// streamEncoders are synchronous (concurrency 1) so that an idle encoder
	// owns no goroutines and memory per Put stays bounded; parallelism comes
	// from concurrent Puts.
	streamEncoders = sync.Pool{New: func() any {
		return mustEncoder(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
			zstd.WithEncoderConcurrency(1))
	}}
	// decoders are synchronous for the same reason.
	decoders = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(decoderMaxMemory))
		if err != nil {
			panic(err) // only on invalid options
		}
		return d
	}}
)

func mustEncoder(opts ...zstd.EOption) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		panic(err) // only on invalid options
	}
	return e
}

// getDecoder returns a pooled decoder reading src; release it with putDecoder.
func getDecoder(src io.Reader) (*zstd.Decoder, error) {
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(src); err != nil {
		return nil, err
	}
	return d, nil
}

func putDecoder(d *zstd.Decoder) {
	if d.Reset(nil) == nil { // drops the reference to the source
		decoders.Put(d)
	}
}

// trackingReader remembers the first error of the underlying reader other
// than io.EOF, so that a failure of the store can be told apart from a
// decoding failure (corruption) reported by whatever reads through it.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// trackingWriter counts bytes and remembers the first write error.
type trackingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.n += int64(n)
	if err != nil && t.err == nil {
		t.err = err
	}
	return n, err
}

// errTooLarge is returned by limitReader once more than its limit is read.
var errTooLarge = errors.New("exceeds size limit")

// limitReader is io.LimitReader that fails instead of reporting EOF when the
// source holds more than n bytes, so an oversized input is not mistaken for a
// truncated one.
type limitReader struct {
	r io.Reader
	n int64 // bytes still allowed
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1] // read one byte past the limit to detect an overflow
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n - 1, errTooLarge
	}
	return n, err
}
