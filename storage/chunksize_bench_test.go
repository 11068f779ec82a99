package storage_test

// BenchmarkChunkSize backs the choice of the fixed chunk size
// (storage.ChunkSize) that docs/repository-format.md explains. For chunk
// sizes of 1, 2, 4 and 8 MiB it measures or computes:
//
//   - write/<kind>/<size>: pack building throughput of encrypted chunks,
//     with pack.Writer Add+Finish and the packing rule of
//     Repository.SaveBlob (close a pack at pack.TargetSize, never exceed
//     pack.MaxSize). MB/s is plaintext; packs/GiB is how many pack objects
//     (PUTs) a GiB of such chunks makes; MiB/pack their mean size.
//   - index/<size>: for 1 TiB of unique random chunks, the index entries
//     per GiB, the heap the in-memory index.Index holds per GiB (measured
//     with runtime.MemStats), the index segment bytes and objects per GiB
//     written with the repository's checkpoint rule (one segment per 4
//     packs), and the bytes a 1 GiB file's chunk list adds to a file list.
//   - append/<size>: the bytes re-uploaded when 1 MiB is appended to a
//     1 GiB file: the chunks of the new file that differ from the old
//     file's (the last partial chunk, rewritten, plus the appended data),
//     for a file of exactly 1 GiB, on average over file sizes 1 GiB + t
//     with t uniform in [0, chunk size), and in the worst case.
//
// Run: go test -run - -bench ChunkSize ./storage/

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/internal/storagetest"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

const (
	mib = 1 << 20
	gib = 1 << 30
	// writeVolume is the plaintext one write iteration packs: a multiple
	// of every chunk size and of several packs of each.
	writeVolume = 96 * mib
	// indexVolume is the repository size whose index is built in memory.
	indexVolume = 1 << 40
	// segmentSample is the data volume whose index segments are encoded:
	// a whole number of 12 MiB and of 8 MiB packs.
	segmentSample = 48 * gib
	// checkpointPacks mirrors storage's checkpoint rule: Repository writes
	// an index segment once 4 uploaded packs wait for one.
	checkpointPacks = 4
)

var benchChunkSizes = []int{1 * mib, 2 * mib, 4 * mib, 8 * mib}

func sizeName(n int) string { return fmt.Sprintf("%dMiB", n/mib) }

// benchCiphers derives the repository's "data" and "index" ciphers the
// way Repository does (HKDF from a master key and a repository id).
func benchCiphers(b *testing.B) (data, idx *crypto.Cipher) {
	mk, err := crypto.NewMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	repoID := bytes.Repeat([]byte{7}, 32)
	if data, err = mk.Cipher(repoID, "data"); err != nil {
		b.Fatal(err)
	}
	if idx, err = mk.Cipher(repoID, "index"); err != nil {
		b.Fatal(err)
	}
	return data, idx
}

var benchWords = strings.Fields(`the quick brown fox jumps over lazy dog keyspace table row column
partition token replica compaction sstable commitlog memtable bloom filter index summary
data statistics digest crc toc timestamp tombstone ttl cluster node rack datacenter`)

// compressibleData is text-like data (zstd fastest shrinks it about 3×).
func compressibleData(r *rand.Rand, n int) []byte {
	var sb strings.Builder
	sb.Grow(n + 64)
	for sb.Len() < n {
		sb.WriteString(benchWords[r.IntN(len(benchWords))])
		switch r.IntN(12) {
		case 0:
			sb.WriteString(",\n")
		case 1:
			fmt.Fprintf(&sb, " %d ", r.Uint32())
		default:
			sb.WriteByte(' ')
		}
	}
	return []byte(sb.String()[:n])
}

type chunk struct {
	id   pack.ID
	data []byte
}

func splitChunks(data []byte, size int) []chunk {
	var cs []chunk
	for off := 0; off < len(data); off += size {
		d := data[off:min(off+size, len(data))]
		cs = append(cs, chunk{id: sha256.Sum256(d), data: d})
	}
	return cs
}

// packChunks packs chunks with the rule of Repository.SaveBlob and
// returns the finished packs' sizes and blob counts.
func packChunks(c *crypto.Cipher, chunks []chunk) (sizes, counts []int, err error) {
	w := pack.NewWriter(c, c.Encrypted())
	finish := func() error {
		data, entries, err := w.Finish()
		if err != nil {
			return err
		}
		sizes = append(sizes, len(data))
		counts = append(counts, len(entries))
		w = pack.NewWriter(c, c.Encrypted())
		return nil
	}
	for _, ch := range chunks {
		if w.Len() > 0 && int64(w.Size())+int64(len(ch.data))+pack.RecordOverhead > pack.MaxSize {
			if err := finish(); err != nil {
				return nil, nil, err
			}
		}
		if _, err := w.Add(ch.id, pack.BlobData, ch.data); err != nil {
			return nil, nil, err
		}
		if w.Size() >= pack.TargetSize {
			if err := finish(); err != nil {
				return nil, nil, err
			}
		}
	}
	if w.Len() > 0 {
		if err := finish(); err != nil {
			return nil, nil, err
		}
	}
	return sizes, counts, nil
}

func BenchmarkChunkSize(b *testing.B) {
	dataCipher, idxCipher := benchCiphers(b)
	b.Logf("storage.ChunkSize = %s; GOMAXPROCS = %d", sizeName(storage.ChunkSize), runtime.GOMAXPROCS(0))

	// (a) pack write throughput, and the control without the pack
	// writer's buffer growth.
	kinds := []struct {
		name string
		data func() []byte
	}{
		{"random", sync.OnceValue(func() []byte { return storagetest.RandomBytes(rand.New(rand.NewPCG(1, 2)), writeVolume) })},
		{"compressible", sync.OnceValue(func() []byte { return compressibleData(rand.New(rand.NewPCG(1, 2)), writeVolume) })},
	}
	for _, kind := range kinds {
		for _, cs := range benchChunkSizes {
			b.Run("write/"+kind.name+"/"+sizeName(cs), func(b *testing.B) {
				chunks := splitChunks(kind.data(), cs)
				b.SetBytes(writeVolume)
				var sizes, counts []int
				for b.Loop() {
					var err error
					if sizes, counts, err = packChunks(dataCipher, chunks); err != nil {
						b.Fatal(err)
					}
				}
				// Pack counts and sizes from the full packs (all but the
				// last, partial one when there are several).
				full := max(len(sizes)-1, 1)
				stored, plain := 0, 0
				for i := range full {
					stored += sizes[i]
					plain += counts[i] * cs
				}
				b.ReportMetric(float64(gib)/(float64(plain)/float64(full)), "packs/GiB")
				b.ReportMetric(float64(stored)/float64(full)/mib, "MiB/pack")
				b.ReportMetric(float64(plain)/float64(stored), "ratio")
			})
		}
	}
	for _, kind := range kinds {
		for _, cs := range benchChunkSizes {
			b.Run("seal/"+kind.name+"/"+sizeName(cs), func(b *testing.B) {
				chunks := splitChunks(kind.data(), cs)
				b.SetBytes(writeVolume)
				enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
					zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
				if err != nil {
					b.Fatal(err)
				}
				packBuf := make([]byte, 0, pack.MaxSize)
				var zbuf []byte
				for b.Loop() {
					packBuf = packBuf[:0]
					for _, ch := range chunks {
						zbuf = enc.EncodeAll(ch.data, zbuf[:0])
						payload, codec := ch.data, byte(0)
						if 100*len(zbuf) < 97*len(ch.data) {
							payload, codec = zbuf, 1
						}
						if len(packBuf)+len(payload)+crypto.Overhead > cap(packBuf) {
							packBuf = packBuf[:0] // the pack would be uploaded here
						}
						aad := append(append([]byte("crayfish/v1/blob"), ch.id[:]...), byte(pack.BlobData), codec)
						packBuf = dataCipher.Seal(packBuf, payload, aad)
					}
				}
			})
		}
	}

	// (b) index entries and index memory per GiB.
	for _, cs := range benchChunkSizes {
		b.Run("index/"+sizeName(cs), func(b *testing.B) {
			// How many random chunks of this size one pack holds, and the
			// pack's size, from the real writer.
			r := rand.New(rand.NewPCG(3, 4))
			sample := splitChunks(storagetest.RandomBytes(r, 2*pack.MaxSize), cs)
			sizes, counts, err := packChunks(dataCipher, sample)
			if err != nil {
				b.Fatal(err)
			}
			perPack, packSize := counts[0], uint32(sizes[0])
			entries := indexVolume / cs
			var heapPerEntry, segBytesPerGiB, segsPerGiB float64
			for b.Loop() {
				heapPerEntry = measureIndexHeap(r, entries, perPack, cs, packSize) / float64(entries)
				segBytes, segs := segmentCost(b, idxCipher, r, segmentSample/cs, perPack, cs, packSize)
				segBytesPerGiB, segsPerGiB = segBytes*gib/segmentSample, segs*gib/segmentSample
			}
			// A 1 GiB file's entry in a file list (JSON line of a meta blob).
			fe := storage.FileEntry{Path: "data/big.db", Type: storage.TypeFile, Size: gib, Mode: 0o644,
				MTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Content: storage.HashBytes(nil),
				Chunks: make([]storage.ObjectID, gib/cs)}
			line, _ := json.Marshal(fe)
			perGiB := float64(gib / cs)
			b.ReportMetric(perGiB, "entries/GiB")
			b.ReportMetric(float64(perPack), "chunks/pack")
			b.ReportMetric(heapPerEntry, "heap-B/entry")
			b.ReportMetric(heapPerEntry*perGiB/1024, "heap-KiB/GiB")
			b.ReportMetric(segBytesPerGiB/1024, "segment-KiB/GiB")
			b.ReportMetric(segsPerGiB, "segments/GiB")
			b.ReportMetric(float64(len(line)+1)/1024, "filelist-KiB/GiB")
		})
	}

	// (c) re-upload cost of appending 1 MiB to a 1 GiB file.
	for _, cs := range benchChunkSizes {
		b.Run("append/"+sizeName(cs), func(b *testing.B) {
			var aligned, mean, worst int64
			for b.Loop() {
				aligned = reuploadBytes(gib, mib, int64(cs))
				var sum int64
				n := 0
				worst = 0
				for t := int64(0); t < int64(cs); t += 4 << 10 {
					c := reuploadBytes(gib+t, mib, int64(cs))
					sum += c
					n++
					worst = max(worst, c)
				}
				worst = max(worst, reuploadBytes(gib+int64(cs)-1, mib, int64(cs)))
				mean = sum / int64(n)
			}
			b.ReportMetric(float64(aligned)/mib, "aligned-MiB")
			b.ReportMetric(float64(mean)/mib, "mean-MiB")
			b.ReportMetric(float64(worst)/mib, "worst-MiB")
		})
	}
}

// measureIndexHeap builds an index of n random blob ids, perPack to a
// pack, and returns the heap it holds (runtime.MemStats delta).
func measureIndexHeap(r *rand.Rand, n, perPack, cs int, packSize uint32) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := index.New()
	var packID pack.ID
	for i := 0; i < n; i++ {
		if i%perPack == 0 {
			binary.LittleEndian.PutUint64(packID[:], r.Uint64())
			binary.LittleEndian.PutUint64(packID[8:], r.Uint64())
		}
		var id pack.ID
		for j := 0; j < 32; j += 8 {
			binary.LittleEndian.PutUint64(id[j:], r.Uint64())
		}
		off := uint32(pack.HeaderSize + (i%perPack)*(cs+crypto.Overhead))
		if _, err := x.Add(id, index.Location{Pack: packID, PackType: pack.BlobData, PackSize: packSize,
			Offset: off, StoredLen: uint32(cs + crypto.Overhead), RawLen: uint32(cs), Type: pack.BlobData, Codec: pack.CodecRaw}); err != nil {
			panic(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(x)
	return float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
}

// segmentCost encodes the index segments a repository writes for n
// chunks (one segment per checkpointPacks packs) and returns their bytes
// and count.
func segmentCost(b *testing.B, c *crypto.Cipher, r *rand.Rand, n, perPack, cs int, packSize uint32) (bytesTotal, segments float64) {
	seg := &index.Segment{}
	flush := func() {
		if len(seg.Entries) == 0 {
			return
		}
		data, err := index.EncodeSegment(c, seg)
		if err != nil {
			b.Fatal(err)
		}
		bytesTotal += float64(len(data))
		segments++
		seg = &index.Segment{}
	}
	for i := 0; i < n; i++ {
		if i%perPack == 0 {
			if len(seg.Packs) == checkpointPacks {
				flush()
			}
			var p pack.ID
			binary.LittleEndian.PutUint64(p[:], r.Uint64())
			seg.Packs = append(seg.Packs, index.PackInfo{ID: p, Type: pack.BlobData, Size: packSize})
		}
		var id pack.ID
		for j := 0; j < 32; j += 8 {
			binary.LittleEndian.PutUint64(id[j:], r.Uint64())
		}
		seg.Entries = append(seg.Entries, index.SegmentEntry{ID: id, PackOrd: uint32(len(seg.Packs) - 1),
			Offset: uint32(pack.HeaderSize + (i%perPack)*(cs+crypto.Overhead)), StoredLen: uint32(cs + crypto.Overhead),
			RawLen: uint32(cs), Type: pack.BlobData, Codec: pack.CodecRaw})
	}
	flush()
	return bytesTotal, segments
}

// reuploadBytes is what a backup uploads after appended bytes were added
// to a file of oldSize bytes, with fixed chunks of cs bytes: every chunk
// of the new file that is not byte-identical to the old file's chunk at
// the same index (a chunk that was the old file's shorter last chunk has
// a new id; chunks past the old end are new).
func reuploadBytes(oldSize, appended, cs int64) int64 {
	newSize := oldSize + appended
	var n int64
	for start := int64(0); start < newSize; start += cs {
		end := min(start+cs, newSize)
		oldEnd := min(start+cs, oldSize)
		if start < oldSize && oldEnd == end {
			continue // same bytes, same id: deduplicated
		}
		n += end - start
	}
	return n
}
