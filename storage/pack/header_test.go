package pack

import (
	"encoding/hex"
	"testing"
)

// TestHeaderBytesPinned pins the v1 pack header and footer AAD
// (docs/repository-format.md): existing packs must keep opening.
func TestHeaderBytesPinned(t *testing.T) {
	if got := hex.EncodeToString(Header(false)); got != "4346504b010000000000000000000000" {
		t.Errorf("plain header %s", got)
	}
	if got := hex.EncodeToString(Header(true)); got != "4346504b010100000000000000000000" {
		t.Errorf("encrypted header %s", got)
	}
	if got := hex.EncodeToString(footerAAD(Header(true))); got != "4346504b010100000000000000000000"+hex.EncodeToString([]byte("crayfish/v1/footer")) {
		t.Errorf("footer AAD %s", got)
	}
	id := ID{1, 2, 3}
	a := blobAAD(id, BlobMeta, 1)
	want := hex.EncodeToString([]byte("crayfish/v1/blob")) + hex.EncodeToString(id[:]) + "0101"
	if got := hex.EncodeToString(a[:]); got != want {
		t.Errorf("blob AAD %s, want %s", got, want)
	}
}
