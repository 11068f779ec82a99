package pack

import (
	"math/rand/v2"
	"testing"
)

// benchBlobs returns 3 × 4 MiB chunks (one TargetSize pack) of the given kind.
func benchBlobs(kind string) []blob {
	r := rand.New(rand.NewPCG(99, 99))
	var bs []blob
	for i := 0; i < 3; i++ {
		if kind == "random" {
			bs = append(bs, newBlob(BlobData, randomBytes(r, 4<<20)))
		} else {
			bs = append(bs, newBlob(BlobData, textBytes(r, 4<<20)))
		}
	}
	return bs
}

func plainBytes(bs []blob) int64 {
	var n int64
	for _, b := range bs {
		n += int64(len(b.data))
	}
	return n
}

// BenchmarkWrite measures Add+Finish throughput (MB/s of plaintext),
// excluding the caller's SHA-256 of the plaintext.
func BenchmarkWrite(b *testing.B) {
	for _, kind := range []string{"compressible", "random"} {
		for mode, c := range ciphers(b) {
			b.Run(kind+"/"+mode, func(b *testing.B) {
				bs := benchBlobs(kind)
				b.SetBytes(plainBytes(bs))
				var packLen int
				for b.Loop() {
					w := NewWriter(c, c.Encrypted())
					for _, bl := range bs {
						if _, err := w.Add(bl.id, bl.typ, bl.data); err != nil {
							b.Fatal(err)
						}
					}
					data, _, err := w.Finish()
					if err != nil {
						b.Fatal(err)
					}
					packLen = len(data)
				}
				b.ReportMetric(float64(plainBytes(bs))/float64(packLen), "ratio")
			})
		}
	}
}

// BenchmarkRead measures ReadFooter + OpenBlob of every blob (MB/s of
// plaintext), including the SHA-256 verification.
func BenchmarkRead(b *testing.B) {
	for _, kind := range []string{"compressible", "random"} {
		for mode, c := range ciphers(b) {
			b.Run(kind+"/"+mode, func(b *testing.B) {
				bs := benchBlobs(kind)
				data, _ := buildPack(b, c, bs)
				b.SetBytes(plainBytes(bs))
				for b.Loop() {
					entries, err := ReadFooter(c, nil, tail(data), int64(len(data)))
					if err != nil {
						b.Fatal(err)
					}
					for _, e := range entries {
						if _, err := OpenBlob(c, e, data[e.Offset:e.End()]); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
