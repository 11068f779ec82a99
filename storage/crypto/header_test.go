package crypto

import "testing"

// TestKeyAADPinned pins the AAD of a wrapped master key
// (docs/repository-format.md): existing key files must keep unwrapping.
func TestKeyAADPinned(t *testing.T) {
	kf := &KeyFile{ID: "0123456789abcdef"}
	if got := string(kf.aad()); got != "crayfish/v1/key/0123456789abcdef" {
		t.Fatalf("key AAD %q", got)
	}
}
