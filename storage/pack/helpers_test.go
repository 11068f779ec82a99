package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/storagetest"
)

// fixedKey makes seeds and failures reproducible.
const fixedKey = "crayfish-pack-test-key-32-bytes!"

func testCipher(t testing.TB) *crypto.Cipher { return storagetest.Cipher(t, fixedKey) }

func otherCipher(t testing.TB) *crypto.Cipher {
	return storagetest.Cipher(t, "another-key-another-key-32bytes!")
}

func ciphers(t testing.TB) map[string]*crypto.Cipher { return storagetest.Ciphers(t, fixedKey) }

var randomBytes = storagetest.RandomBytes

var words = strings.Fields(`the quick brown fox jumps over lazy dog keyspace table row column
partition token replica compaction sstable commitlog memtable bloom filter index summary
data statistics digest crc toc timestamp tombstone ttl cluster node rack datacenter`)

// textBytes returns compressible text-like data (zstd fastest ratio ~3-4).
func textBytes(r *rand.Rand, n int) []byte {
	var sb strings.Builder
	for sb.Len() < n {
		sb.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			sb.WriteString(",\n")
		} else {
			sb.WriteByte(' ')
		}
		if r.IntN(8) == 0 {
			sb.WriteString(strings.Repeat("0123456789"[r.IntN(10):], 1))
		}
	}
	return []byte(sb.String()[:n])
}

type blob struct {
	id   ID
	typ  BlobType
	data []byte
}

func newBlob(typ BlobType, data []byte) blob {
	return blob{id: sha256.Sum256(data), typ: typ, data: data}
}

// buildPack writes blobs into one pack.
func buildPack(t testing.TB, c *crypto.Cipher, blobs []blob) ([]byte, []Entry) {
	t.Helper()
	w := NewWriter(c, c.Encrypted())
	for _, b := range blobs {
		if _, err := w.Add(b.id, b.typ, b.data); err != nil {
			t.Fatal(err)
		}
	}
	size := w.Size()
	data, entries, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if size != len(data) {
		t.Fatalf("Size() = %d before Finish, pack is %d bytes", size, len(data))
	}
	return data, entries
}

// tail returns the last min(len, TailReadSize) bytes, as a reader fetches them.
func tail(data []byte) []byte { return data[max(0, len(data)-TailReadSize):] }

// fixCRC rewrites the trailer crc to match the footer the trailer claims,
// so tests (and the fuzzer) reach the checks behind the crc.
func fixCRC(data []byte) bool {
	if len(data) < TrailerSize {
		return false
	}
	t := data[len(data)-TrailerSize:]
	fl := int64(binary.LittleEndian.Uint32(t))
	if fl > int64(len(data)-TrailerSize) {
		return false
	}
	end := len(data) - TrailerSize
	binary.LittleEndian.PutUint32(t[8:], crc32.Checksum(data[end-int(fl):end], castagnoli))
	return true
}

// forgePlain builds an unencrypted pack of size packSize whose footer lists
// the given entries verbatim (records are zero bytes), for validation tests.
func forgePlain(packSize int, entries []Entry, count uint32) []byte {
	plain := binary.LittleEndian.AppendUint32(nil, count)
	for _, e := range entries {
		plain = appendEntry(plain, e)
	}
	data := make([]byte, packSize-len(plain)-TrailerSize, packSize)
	copy(data, Header(false))
	data = append(data, plain...)
	var tr [TrailerSize]byte
	binary.LittleEndian.PutUint32(tr[0:], uint32(len(plain)))
	binary.LittleEndian.PutUint32(tr[4:], uint32(len(entries)))
	binary.LittleEndian.PutUint32(tr[8:], crc32.Checksum(plain, castagnoli))
	copy(tr[12:], trailerMagic)
	return append(data, tr[:]...)
}
