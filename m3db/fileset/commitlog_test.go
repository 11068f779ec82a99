package fileset

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"testing"
)

func chunk(data string) []byte {
	h := make([]byte, commitLogChunkHeader)
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[4:8], adler32.Checksum(h[0:4]))
	binary.LittleEndian.PutUint32(h[8:12], adler32.Checksum([]byte(data)))
	return append(h, data...)
}

// TestCompleteCommitLogLength: a log cut anywhere keeps its whole chunks
// only; a header whose size fails its checksum ends the log there.
func TestCompleteCommitLogLength(t *testing.T) {
	a, b, c := chunk("first chunk"), chunk(""), chunk("third, longer chunk of data")
	log := bytes.Join([][]byte{a, b, c}, nil)
	whole := []int64{0, int64(len(a)), int64(len(a) + len(b)), int64(len(log))}
	for cut := 0; cut <= len(log); cut++ {
		want := int64(0)
		for _, w := range whole {
			if w <= int64(cut) {
				want = w
			}
		}
		got, err := CompleteCommitLogLength(bytes.NewReader(log), int64(cut))
		if err != nil || got != want {
			t.Fatalf("cut at %d: %d, %v; want %d", cut, got, err, want)
		}
	}
	bad := bytes.Clone(log)
	bad[len(a)+4] ^= 0xff // the second chunk's size checksum
	if got, _ := CompleteCommitLogLength(bytes.NewReader(bad), int64(len(bad))); got != int64(len(a)) {
		t.Errorf("a damaged size checksum: %d, want %d", got, len(a))
	}
}
