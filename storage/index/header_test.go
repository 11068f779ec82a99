package index

import (
	"encoding/hex"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/crypto"
)

// TestHeaderBytesPinned pins the v1 index segment header and AAD
// (docs/repository-format.md): existing segments must keep opening.
func TestHeaderBytesPinned(t *testing.T) {
	if got := hex.EncodeToString(header(false)); got != "43464958010000000000000000000000" {
		t.Errorf("plain header %s", got)
	}
	if got := hex.EncodeToString(header(true)); got != "43464958010100000000000000000000" {
		t.Errorf("encrypted header %s", got)
	}
	if got := hex.EncodeToString(aad(header(true))); got != "43464958010100000000000000000000"+hex.EncodeToString([]byte("crayfish/v1/index")) {
		t.Errorf("AAD %s", got)
	}
	// And the header is what EncodeSegment writes.
	for _, c := range []*crypto.Cipher{crypto.NoEncryption(), testCipher(t)} {
		b, err := EncodeSegment(c, &Segment{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hex.EncodeToString(b[:HeaderSize]), hex.EncodeToString(header(c.Encrypted())); got != want {
			t.Errorf("encoded segment starts %s, want %s", got, want)
		}
	}
}
