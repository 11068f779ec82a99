package header

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestNew(t *testing.T) {
	for _, c := range []struct {
		magic string
		enc   bool
		want  string
	}{
		{"CFSN", false, "4346534e010000000000000000000000"},
		{"CFSN", true, "4346534e010100000000000000000000"},
		{"ABCD", true, "41424344010100000000000000000000"},
	} {
		if got := hex.EncodeToString(New(c.magic, c.enc)); got != c.want {
			t.Errorf("New(%q, %v) = %s, want %s", c.magic, c.enc, got, c.want)
		}
	}
}

func TestNewRefusesBadMagic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a 3-byte magic was accepted")
		}
	}()
	New("CFS", false)
}

func TestAAD(t *testing.T) {
	h := New("CFGP", true)
	orig := bytes.Clone(h)
	got := AAD(h, "crayfish/v1/gc-plan")
	if want := append(bytes.Clone(orig), "crayfish/v1/gc-plan"...); !bytes.Equal(got, want) {
		t.Fatalf("AAD = %x, want %x", got, want)
	}
	if !bytes.Equal(h, orig) {
		t.Fatal("AAD modified the header")
	}
	got[0] = 'X' // a new slice: the header is not aliased
	if h[0] != 'C' {
		t.Fatal("AAD aliases the header")
	}
	if got := string(AAD(nil, "crayfish/v1/key/", "0123")); got != "crayfish/v1/key/0123" {
		t.Fatalf("AAD(nil, …) = %q", got)
	}
	if got := AAD(nil); len(got) != 0 {
		t.Fatalf("AAD(nil) = %x", got)
	}
}
