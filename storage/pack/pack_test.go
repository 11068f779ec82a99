package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/crayfish-backup/crayfish/storage/crypto"
)

func mixedBlobs(r *rand.Rand) []blob {
	var bs []blob
	bs = append(bs, newBlob(BlobData, nil))              // empty
	bs = append(bs, newBlob(BlobData, []byte("x")))      // tiny
	bs = append(bs, newBlob(BlobMeta, textBytes(r, 10))) // tiny text
	for i := 0; i < 40; i++ {
		n := r.IntN(64 << 10)
		if i%2 == 0 {
			bs = append(bs, newBlob(BlobData, randomBytes(r, n)))
		} else {
			bs = append(bs, newBlob(BlobMeta, textBytes(r, n)))
		}
	}
	bs = append(bs, newBlob(BlobData, textBytes(r, 1<<20)))
	bs = append(bs, newBlob(BlobData, randomBytes(r, 1<<20)))
	bs = append(bs, newBlob(BlobData, make([]byte, 100))) // zeros
	return bs
}

func checkAll(t *testing.T, c *crypto.Cipher, data []byte, want []blob, wantEntries []Entry) {
	t.Helper()
	entries, err := ReadFooter(c, nil, tail(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(entries) != fmt.Sprint(wantEntries) {
		t.Fatal("footer entries differ from the writer's")
	}
	// With the real header too.
	if _, err := ReadFooter(c, data[:HeaderSize], tail(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		if e.ID != want[i].id || e.Type != want[i].typ || int(e.RawLen) != len(want[i].data) {
			t.Fatalf("entry %d = %+v", i, e)
		}
		got, err := OpenBlob(c, e, data[e.Offset:e.End()])
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(got, want[i].data) {
			t.Fatalf("blob %d: wrong plaintext", i)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			blobs := mixedBlobs(r)
			data, entries := buildPack(t, c, blobs)
			if string(data[:4]) != "CFPK" || data[4] != 1 || string(data[len(data)-4:]) != "KPFC" {
				t.Fatalf("magic: % x ... % x", data[:16], data[len(data)-16:])
			}
			if (data[5] == 1) != c.Encrypted() {
				t.Fatalf("flags %x", data[5])
			}
			checkAll(t, c, data, blobs, entries)
		})
	}
}

func TestRoundTripMaxBlob(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			blobs := []blob{
				newBlob(BlobData, randomBytes(r, 8<<20)),
				newBlob(BlobData, textBytes(r, 4<<20)),
				newBlob(BlobData, randomBytes(r, MaxBlobSize)),
			}
			w := NewWriter(c, c.Encrypted())
			var written []blob
			for _, b := range blobs {
				_, err := w.Add(b.id, b.typ, b.data)
				if errors.Is(err, ErrPackFull) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				written = append(written, b)
			}
			data, entries, err := w.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if len(written) != 2 || len(data) > MaxSize {
				t.Fatalf("%d blobs in a %d-byte pack", len(written), len(data))
			}
			checkAll(t, c, data, written, entries)
			// A MaxBlobSize blob alone.
			data, entries = buildPack(t, c, blobs[2:])
			checkAll(t, c, data, blobs[2:], entries)
		})
	}
}

func TestCodecChoice(t *testing.T) {
	c := testCipher(t)
	r := rand.New(rand.NewPCG(5, 6))
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	sawRaw, sawZstd := false, false
	w := NewWriter(c, true)
	// Random data with a growing share of zeros crosses the 0.97 threshold.
	for zeros := 0; zeros <= 400; zeros += 5 {
		data := append(randomBytes(r, 10000-zeros*10), make([]byte, zeros*10)...)
		e, err := w.Add(sha256.Sum256(data), BlobData, data)
		if err != nil {
			t.Fatal(err)
		}
		comp := enc.EncodeAll(data, nil)
		wantZstd := 100*len(comp) < 97*len(data)
		if (e.Codec == CodecZstd) != wantZstd {
			t.Fatalf("zeros=%d: compressed %d of %d, codec %v", zeros*10, len(comp), len(data), e.Codec)
		}
		if e.Codec == CodecZstd {
			sawZstd = true
			if int(e.StoredLen) != len(comp)+crypto.Overhead {
				t.Fatalf("stored %d, compressed %d", e.StoredLen, len(comp))
			}
		} else {
			sawRaw = true
			if int(e.StoredLen) != len(data)+crypto.Overhead {
				t.Fatalf("raw stored %d for %d", e.StoredLen, len(data))
			}
		}
	}
	if !sawRaw || !sawZstd {
		t.Fatalf("threshold not crossed: raw=%v zstd=%v", sawRaw, sawZstd)
	}
	for _, tc := range []struct {
		data []byte
		want Codec
	}{
		{nil, CodecRaw},
		{[]byte{}, CodecRaw},
		{[]byte("a"), CodecRaw},
		{make([]byte, 1<<20), CodecZstd},
		{textBytes(r, 100000), CodecZstd},
		{randomBytes(r, 100000), CodecRaw},
	} {
		e, err := w.Add(sha256.Sum256(tc.data), BlobMeta, tc.data)
		if err != nil {
			t.Fatal(err)
		}
		if e.Codec != tc.want {
			t.Errorf("%d bytes: codec %v, want %v", len(tc.data), e.Codec, tc.want)
		}
	}
}

func TestUnencryptedPack(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	secret := randomBytes(r, 1000)
	data, entries := buildPack(t, crypto.NoEncryption(), []blob{newBlob(BlobData, secret)})
	if data[5] != 0 {
		t.Fatalf("flags %x", data[5])
	}
	if !bytes.Equal(data[HeaderSize:HeaderSize+1000], secret) || entries[0].StoredLen != 1000 {
		t.Fatal("unencrypted raw record is not the plaintext")
	}
	// Mode mismatches are refused both ways.
	if _, err := ReadFooter(testCipher(t), data[:HeaderSize], data, int64(len(data))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("plain pack read as encrypted: %v", err)
	}
	if _, err := ReadFooter(testCipher(t), nil, data, int64(len(data))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("plain pack read as encrypted (no header): %v", err)
	}
	enc, _ := buildPack(t, testCipher(t), []blob{newBlob(BlobData, secret)})
	if bytes.Contains(enc, secret[:32]) {
		t.Fatal("plaintext visible in an encrypted pack")
	}
	if _, err := ReadFooter(crypto.NoEncryption(), enc[:HeaderSize], enc, int64(len(enc))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("encrypted pack read as plain: %v", err)
	}
	if _, err := ReadFooter(crypto.NoEncryption(), nil, enc, int64(len(enc))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("encrypted pack read as plain (no header): %v", err)
	}
}

func TestWriterMisuse(t *testing.T) {
	id := sha256.Sum256(nil)
	w := NewWriter(crypto.NoEncryption(), true)
	if _, err := w.Add(id, BlobData, nil); err == nil {
		t.Error("plain cipher with encrypted=true accepted")
	}
	if _, _, err := w.Finish(); err == nil {
		t.Error("Finish accepted the mismatch")
	}
	if _, err := NewWriter(testCipher(t), false).Add(id, BlobData, nil); err == nil {
		t.Error("encrypting cipher with encrypted=false accepted")
	}
	if _, err := NewWriter(nil, false).Add(id, BlobData, nil); err == nil {
		t.Error("nil cipher accepted")
	}
	w = NewWriter(testCipher(t), true)
	if _, err := w.Add(id, BlobType(2), nil); err == nil {
		t.Error("unknown blob type accepted")
	}
	if _, err := w.Add(id, BlobData, make([]byte, MaxBlobSize+1)); !errors.Is(err, ErrBlobTooLarge) {
		t.Errorf("oversized blob: %v", err)
	}
	if _, _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(id, BlobData, nil); err == nil {
		t.Error("Add after Finish accepted")
	}
	if _, _, err := w.Finish(); err == nil {
		t.Error("second Finish accepted")
	}
}

func TestEmptyPack(t *testing.T) {
	for name, c := range ciphers(t) {
		data, entries := buildPack(t, c, nil)
		got, err := ReadFooter(c, data[:HeaderSize], data, int64(len(data)))
		if err != nil || len(got) != 0 || len(entries) != 0 {
			t.Fatalf("%s: %v %v", name, got, err)
		}
	}
}

func TestHardSizeLimit(t *testing.T) {
	c := testCipher(t)
	r := rand.New(rand.NewPCG(9, 10))
	w := NewWriter(c, true)
	var blobs []blob
	for {
		b := newBlob(BlobData, randomBytes(r, 1<<20+r.IntN(1000)))
		if w.Size() >= TargetSize && len(blobs) == 0 {
			t.Fatal("unreachable")
		}
		_, err := w.Add(b.id, b.typ, b.data)
		if errors.Is(err, ErrPackFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if w.Size() > MaxSize {
			t.Fatalf("Size %d > MaxSize", w.Size())
		}
		blobs = append(blobs, b)
	}
	if w.Size() < MaxSize-(1<<20+1000+RecordOverhead) {
		t.Fatalf("refused too early at %d", w.Size())
	}
	// Small blobs still fit after a refusal; the writer stays usable.
	small := newBlob(BlobData, []byte("small"))
	if _, err := w.Add(small.id, small.typ, small.data); err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, small)
	data, entries, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxSize {
		t.Fatalf("pack of %d bytes > MaxSize", len(data))
	}
	checkAll(t, c, data, blobs, entries)
}

func TestLargeFooterNeedsSecondRead(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			var blobs []blob
			for i := 0; i < 3000; i++ {
				blobs = append(blobs, newBlob(BlobMeta, []byte(fmt.Sprintf("blob number %d", i))))
			}
			data, entries := buildPack(t, c, blobs)
			tl := tail(data)
			_, err := ReadFooter(c, nil, tl, int64(len(data)))
			if !errors.Is(err, ErrShortTail) {
				t.Fatalf("64 KiB tail of a %d-entry footer: %v", len(blobs), err)
			}
			fl, count, _, err := ParseTrailer(tl)
			if err != nil || count != 3000 {
				t.Fatal(count, err)
			}
			got, err := ReadFooter(c, nil, data[int64(len(data))-FooterReadSize(fl):], int64(len(data)))
			if err != nil || len(got) != len(entries) {
				t.Fatal(err)
			}
		})
	}
}

func TestRecordCorruption(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, 12))
			blobs := []blob{
				newBlob(BlobData, randomBytes(r, 3000)),
				newBlob(BlobData, textBytes(r, 5000)),
				newBlob(BlobMeta, textBytes(r, 300)),
				newBlob(BlobData, []byte("z")),
				newBlob(BlobData, randomBytes(r, 700)),
			}
			data, entries := buildPack(t, c, blobs)
			for victim, e := range entries {
				// Every byte of small records, a sample of larger ones.
				step := max(1, int(e.StoredLen)/97)
				for pos := int(e.Offset); pos < int(e.End()); pos += step {
					for _, bit := range []byte{0x01, 0x80} {
						bad := bytes.Clone(data)
						bad[pos] ^= bit
						got, err := ReadFooter(c, bad[:HeaderSize], tail(bad), int64(len(bad)))
						if err != nil {
							t.Fatalf("record flip broke the footer: %v", err)
						}
						for i, e2 := range got {
							pt, err := OpenBlob(c, e2, bad[e2.Offset:e2.End()])
							if i == victim && !c.Encrypted() && err == nil {
								// Without encryption a flip may hit bits the zstd
								// decoder ignores; the plaintext must then still
								// be exactly right (its SHA-256 was checked).
								if !bytes.Equal(pt, blobs[i].data) {
									t.Fatalf("flip at %d: wrong plaintext returned", pos)
								}
							} else if i == victim {
								if !errors.Is(err, ErrCorrupt) {
									t.Fatalf("flip at %d (blob %d): err = %v", pos, i, err)
								}
								if c.Encrypted() && !errors.Is(err, crypto.ErrAuth) {
									t.Fatalf("flip at %d: %v does not wrap ErrAuth", pos, err)
								}
							} else if err != nil || !bytes.Equal(pt, blobs[i].data) {
								t.Fatalf("flip in blob %d broke blob %d: %v", victim, i, err)
							}
						}
					}
				}
			}
		})
	}
}

func TestFooterAndTrailerCorruption(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(13, 14))
			data, entries := buildPack(t, c, []blob{
				newBlob(BlobData, randomBytes(r, 500)), newBlob(BlobMeta, textBytes(r, 900)),
			})
			last := entries[len(entries)-1].End()
			for pos := int(last); pos < len(data); pos++ {
				bad := bytes.Clone(data)
				bad[pos] ^= 0x04
				if _, err := ReadFooter(c, nil, tail(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("flip at %d (footer/trailer from %d): %v", pos, last, err)
				}
				if _, _, _, err := ParseTrailer(bad); pos >= len(data)-TrailerSize && pos < len(data)-8 || pos >= len(data)-4 {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("ParseTrailer accepted flip at %d", pos)
					}
				}
				// With the crc fixed up, authentication (encrypted) catches
				// footer flips.
				if c.Encrypted() && pos < len(data)-TrailerSize {
					fixCRC(bad)
					_, err := ReadFooter(c, nil, tail(bad), int64(len(bad)))
					if !errors.Is(err, ErrCorrupt) || !errors.Is(err, crypto.ErrAuth) {
						t.Fatalf("flip at %d with fixed crc: %v", pos, err)
					}
				}
			}
			// A changed header fails authentication of the footer.
			bad := bytes.Clone(data)
			bad[15] = 1
			if _, err := ReadFooter(c, bad[:HeaderSize], tail(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reserved header byte: %v", err)
			}
			for i, h := range [][]byte{[]byte("CFPX\x01"), []byte("CFPK\x02"), []byte("CFPK\x01\x02")} {
				bad := bytes.Clone(data)
				copy(bad, h)
				if _, err := ReadFooter(c, bad[:HeaderSize], tail(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("header %d: %v", i, err)
				}
			}
			if _, err := ReadFooter(c, data[:15], tail(data), int64(len(data))); !errors.Is(err, ErrCorrupt) {
				t.Fatal("short header accepted")
			}
		})
	}
}

func TestTruncatedPack(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(15, 16))
			data, _ := buildPack(t, c, []blob{newBlob(BlobData, randomBytes(r, 2000)), newBlob(BlobData, textBytes(r, 2000))})
			for n := 0; n < len(data); n += 7 {
				// Cut off the end...
				cut := data[:n]
				if _, err := ReadFooter(c, nil, cut, int64(len(cut))); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("first %d bytes: %v", n, err)
				}
				// ...or the start (a short object whose tail is intact).
				cut = data[len(data)-n:]
				if _, err := ReadFooter(c, nil, cut, int64(len(cut))); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("last %d bytes: %v", n, err)
				}
			}
		})
	}
}

func TestWrongKey(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	blobs := []blob{newBlob(BlobData, randomBytes(r, 100)), newBlob(BlobData, textBytes(r, 1000))}
	data, entries := buildPack(t, testCipher(t), blobs)
	_, err := ReadFooter(otherCipher(t), nil, tail(data), int64(len(data)))
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("footer under the wrong key: %v", err)
	}
	for _, e := range entries {
		if _, err := OpenBlob(otherCipher(t), e, data[e.Offset:e.End()]); !errors.Is(err, ErrCorrupt) || !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("blob under the wrong key: %v", err)
		}
	}
}

func TestSwappedRecords(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(19, 20))
			a, b := newBlob(BlobData, randomBytes(r, 1000)), newBlob(BlobData, randomBytes(r, 1000))
			data, entries := buildPack(t, c, []blob{a, b})
			ea, eb := entries[0], entries[1]
			if ea.StoredLen != eb.StoredLen {
				t.Fatal("test needs equal lengths")
			}
			bad := bytes.Clone(data)
			copy(bad[ea.Offset:ea.End()], data[eb.Offset:eb.End()])
			copy(bad[eb.Offset:eb.End()], data[ea.Offset:ea.End()])
			for _, e := range entries {
				_, err := OpenBlob(c, e, bad[e.Offset:e.End()])
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("swapped record opened: %v", err)
				}
				if c.Encrypted() && !errors.Is(err, crypto.ErrAuth) {
					t.Fatalf("swapped record: %v, want ErrAuth", err)
				}
			}
			// An entry whose type is changed fails the same way (the AAD
			// binds type and codec; unencrypted packs cannot check the type),
			// as does a different id.
			e := ea
			e.Type = BlobMeta
			if _, err := OpenBlob(c, e, data[e.Offset:e.End()]); c.Encrypted() && !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("type changed: %v", err)
			}
			e = ea
			e.ID = eb.ID
			if _, err := OpenBlob(c, e, data[e.Offset:e.End()]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("id changed: %v", err)
			}
		})
	}
}

func TestOpenBlobEntryLies(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(21, 22))
			data, entries := buildPack(t, c, []blob{newBlob(BlobData, textBytes(r, 50000)), newBlob(BlobData, randomBytes(r, 100))})
			z, raw := entries[0], entries[1]
			if z.Codec != CodecZstd || raw.Codec != CodecRaw {
				t.Fatal("codecs")
			}
			lies := map[string]Entry{}
			e := z
			e.RawLen--
			lies["zstd rawLen-1"] = e
			e = z
			e.RawLen++
			lies["zstd rawLen+1"] = e
			e = z
			e.RawLen = MaxBlobSize + 1
			lies["zstd rawLen huge"] = e
			e = raw
			e.RawLen++
			lies["raw rawLen+1"] = e
			e = z
			e.Codec = 7
			lies["codec"] = e
			e = z
			e.Type = 9
			lies["type"] = e
			for what, e := range lies {
				if _, err := OpenBlob(c, e, data[z.Offset:z.End()]); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v", what, err)
				}
			}
			if _, err := OpenBlob(c, z, data[z.Offset:z.End()-1]); !errors.Is(err, ErrCorrupt) {
				t.Error("short record accepted")
			}
		})
	}
}

// TestZstdCodecLie: an unencrypted record whose payload is a zstd frame
// decoding to more than rawLen is cut off at rawLen, not decoded whole.
func TestZstdDecodeCappedAtRawLen(t *testing.T) {
	c := crypto.NoEncryption()
	big := make([]byte, 4<<20)
	enc, _ := zstd.NewWriter(nil)
	frame := enc.EncodeAll(big, nil)
	small := big[:len(frame)+10]
	e := Entry{ID: sha256.Sum256(small), Type: BlobData, Codec: CodecZstd, Offset: HeaderSize, StoredLen: uint32(len(frame)), RawLen: uint32(len(small))}
	if _, err := OpenBlob(c, e, frame); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("oversized frame: %v", err)
	}
}

func TestTrailerLies(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(23, 24))
			data, _ := buildPack(t, c, []blob{newBlob(BlobData, randomBytes(r, 500)), newBlob(BlobData, randomBytes(r, 500))})
			tr := len(data) - TrailerSize
			fl := binary.LittleEndian.Uint32(data[tr:])
			cases := map[string]func(b []byte){
				"footerLen+48 count+1": func(b []byte) {
					binary.LittleEndian.PutUint32(b[tr:], fl+EntrySize)
					binary.LittleEndian.PutUint32(b[tr+4:], 3)
				},
				"footerLen-48 count-1": func(b []byte) {
					binary.LittleEndian.PutUint32(b[tr:], fl-EntrySize)
					binary.LittleEndian.PutUint32(b[tr+4:], 1)
				},
				"footerLen+1":    func(b []byte) { binary.LittleEndian.PutUint32(b[tr:], fl+1) },
				"footerLen huge": func(b []byte) { binary.LittleEndian.PutUint32(b[tr:], 0xffffffff) },
				"footerLen zero": func(b []byte) { binary.LittleEndian.PutUint32(b[tr:], 0) },
				"count huge":     func(b []byte) { binary.LittleEndian.PutUint32(b[tr+4:], 0xffffffff) },
				"footer > pack": func(b []byte) {
					binary.LittleEndian.PutUint32(b[tr:], fl+EntrySize*1000)
					binary.LittleEndian.PutUint32(b[tr+4:], 1002)
				},
				"magic": func(b []byte) { copy(b[len(b)-4:], "KPFD") },
			}
			for what, edit := range cases {
				bad := bytes.Clone(data)
				edit(bad)
				fixCRC(bad)
				if _, err := ReadFooter(c, nil, tail(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v", what, err)
				}
			}
			// A packSize smaller than the real pack puts records into the footer.
			if _, err := ReadFooter(c, nil, data[100:], int64(len(data)-100)); !errors.Is(err, ErrCorrupt) {
				t.Error("records overlapping the footer accepted")
			}
			if _, err := ReadFooter(c, nil, data, int64(len(data)-1)); err == nil {
				t.Error("tail longer than the pack accepted")
			}
		})
	}
}

func TestForgedFooterValidation(t *testing.T) {
	c := crypto.NoEncryption()
	id := sha256.Sum256([]byte("x"))
	const size = 10000
	limit := uint32(size - TrailerSize - (4 + 2*EntrySize))
	good := func() []Entry {
		return []Entry{
			{ID: id, Type: BlobData, Codec: CodecRaw, Offset: 16, StoredLen: 100, RawLen: 100},
			{ID: id, Type: BlobMeta, Codec: CodecZstd, Offset: 116, StoredLen: 50, RawLen: 1000},
		}
	}
	if _, err := ReadFooter(c, nil, forgePlain(size, good(), 2), size); err != nil {
		t.Fatalf("valid forged footer: %v", err)
	}
	cases := map[string]func(es []Entry){
		"offset in header":   func(es []Entry) { es[0].Offset = 15 },
		"overlap":            func(es []Entry) { es[1].Offset = 115 },
		"unsorted":           func(es []Entry) { es[0], es[1] = es[1], es[0] },
		"into footer":        func(es []Entry) { es[1].Offset = limit - 49 },
		"beyond pack":        func(es []Entry) { es[1].Offset = 0xfffffff0 },
		"rawLen huge":        func(es []Entry) { es[1].RawLen = MaxBlobSize + 1 },
		"type":               func(es []Entry) { es[0].Type = 2 },
		"codec":              func(es []Entry) { es[0].Codec = 2 },
		"raw length":         func(es []Entry) { es[0].RawLen = 99 },
		"zstd larger":        func(es []Entry) { es[1].RawLen = 49 },
		"zstd empty":         func(es []Entry) { es[1].StoredLen, es[1].RawLen = 0, 0 },
		"storedLen overflow": func(es []Entry) { es[1].StoredLen = 0xffffffff },
	}
	for what, edit := range cases {
		es := good()
		edit(es)
		if _, err := ReadFooter(c, nil, forgePlain(size, es, 2), size); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", what, err)
		}
	}
	// Ends exactly at the footer: fine.
	es := good()
	es[1].Offset = limit - 50
	if _, err := ReadFooter(c, nil, forgePlain(size, es, 2), size); err != nil {
		t.Errorf("record ending at the footer: %v", err)
	}
	// Count in the footer differs from the trailer's.
	if _, err := ReadFooter(c, nil, forgePlain(size, good(), 3), size); !errors.Is(err, ErrCorrupt) {
		t.Error("footer count mismatch accepted")
	}
	// Reserved bytes.
	data := forgePlain(size, good(), 2)
	fstart := size - TrailerSize - (4 + 2*EntrySize)
	data[fstart+4+34] = 1
	fixCRC(data)
	if _, err := ReadFooter(c, nil, data, size); !errors.Is(err, ErrCorrupt) {
		t.Error("reserved entry bytes accepted")
	}
}

func TestPlanReads(t *testing.T) {
	es := []Entry{
		{Offset: 1000, StoredLen: 100}, // 1000-1100
		{Offset: 16, StoredLen: 84},    // 16-100
		{Offset: 100, StoredLen: 100},  // 100-200 touching
		{Offset: 250, StoredLen: 50},   // gap 50
		{Offset: 1100, StoredLen: 10},  // touching 1000-1100
		{Offset: 5000, StoredLen: 1},
	}
	if PlanReads(nil, 10) != nil {
		t.Fatal("nil entries")
	}
	got := PlanReads(es, 0)
	want := "[{16 184 2} {250 50 1} {1000 110 2} {5000 1 1}]"
	if s := rangesString(got); s != want {
		t.Fatalf("gap 0: %s, want %s", s, want)
	}
	if s := rangesString(PlanReads(es, 50)); s != "[{16 284 3} {1000 110 2} {5000 1 1}]" {
		t.Fatalf("gap 50: %s", s)
	}
	if s := rangesString(PlanReads(es, 1<<30)); s != "[{16 4985 6}]" {
		t.Fatalf("gap huge: %s", s)
	}
	if s := rangesString(PlanReads(es, -5)); s != want {
		t.Fatalf("negative gap: %s", s)
	}
	// Duplicates and every entry covered exactly once.
	rs := PlanReads(append(es, es[0]), 0)
	n := 0
	for _, r := range rs {
		for _, e := range r.Entries {
			if int64(e.Offset) < r.Offset || e.End() > r.End() {
				t.Fatalf("entry %+v outside %+v", e, r)
			}
			n++
		}
	}
	if n != len(es)+1 {
		t.Fatalf("%d entries in plan", n)
	}
	// Appending to one range's entries must not clobber the next.
	rs = PlanReads(es, 0)
	_ = append(rs[0].Entries, Entry{Offset: 99999})
	if rs[1].Entries[0].Offset != 250 {
		t.Fatal("ranges share backing array")
	}
}

func rangesString(rs []Range) string {
	s := "["
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("{%d %d %d}", r.Offset, r.Length, len(r.Entries))
	}
	return s + "]"
}

func TestPlanReadsOnRealPack(t *testing.T) {
	c := testCipher(t)
	r := rand.New(rand.NewPCG(25, 26))
	blobs := mixedBlobs(r)
	data, entries := buildPack(t, c, blobs)
	// Restore every third blob with coalesced reads.
	var want []Entry
	for i := 0; i < len(entries); i += 3 {
		want = append(want, entries[i])
	}
	byID := map[ID][]byte{}
	for _, b := range blobs {
		byID[b.id] = b.data
	}
	for _, gap := range []int64{0, 4096, 1 << 20} {
		got := 0
		for _, rg := range PlanReads(want, gap) {
			read := data[rg.Offset:rg.End()]
			for _, e := range rg.Entries {
				rec, err := rg.Record(read, e)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := OpenBlob(c, e, rec)
				if err != nil || !bytes.Equal(pt, byID[e.ID]) {
					t.Fatal(err)
				}
				got++
			}
			if _, err := rg.Record(read[:len(read)-1], rg.Entries[len(rg.Entries)-1]); err == nil {
				t.Fatal("Record accepted short data")
			}
		}
		if got != len(want) {
			t.Fatalf("gap %d: %d blobs", gap, got)
		}
	}
}

// OpenBlobInPlace opens what OpenBlob opens (zstd and raw records, with
// and without encryption) and refuses a flipped byte the same way.
func TestOpenBlobInPlace(t *testing.T) {
	for name, c := range ciphers(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(23, 24))
			data, entries := buildPack(t, c, []blob{newBlob(BlobData, textBytes(r, 50000)), newBlob(BlobData, randomBytes(r, 70000))})
			for _, e := range entries {
				want, err := OpenBlob(c, e, data[e.Offset:e.End()])
				if err != nil {
					t.Fatal(err)
				}
				sealed := bytes.Clone(data[e.Offset:e.End()])
				got, err := OpenBlobInPlace(c, e, sealed)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("codec %d: in place %d bytes, %v; want %d bytes", e.Codec, len(got), err, len(want))
				}
				if c.Encrypted() {
					bad := bytes.Clone(data[e.Offset:e.End()])
					bad[len(bad)/2] ^= 1
					if _, err := OpenBlobInPlace(c, e, bad); !errors.Is(err, ErrCorrupt) {
						t.Errorf("codec %d: flipped byte: %v", e.Codec, err)
					}
				}
			}
		})
	}
}
