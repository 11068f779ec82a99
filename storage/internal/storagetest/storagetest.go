package storagetest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/crypto"
)

// Cipher returns an encrypting cipher under key (32 bytes): a fixed key
// makes seeds and failures reproducible, where real repositories derive
// keys with MasterKey.Cipher.
func Cipher(t testing.TB, key string) *crypto.Cipher {
	t.Helper()
	c, err := crypto.NewCipher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Ciphers returns the two modes under test: "encrypted" (under key) and
// "plain".
func Ciphers(t testing.TB, key string) map[string]*crypto.Cipher {
	return map[string]*crypto.Cipher{"encrypted": Cipher(t, key), "plain": crypto.NoEncryption()}
}

// RandomBytes returns n incompressible bytes from r.
func RandomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// CheckFuzzCorpus checks that dir (testdata/fuzz/FuzzX) holds a file
// seed-<name> for every seed, in Go's corpus format; with
// CRAYFISH_WRITE_FUZZ_CORPUS=1 it first regenerates the files (nonces
// are random, so their bytes change).
func CheckFuzzCorpus(t testing.TB, dir string, seeds map[string][]byte) {
	t.Helper()
	if os.Getenv("CRAYFISH_WRITE_FUZZ_CORPUS") == "1" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, "seed-"+name))
		if err != nil {
			t.Fatalf("seed corpus file missing (regenerate with CRAYFISH_WRITE_FUZZ_CORPUS=1): %v", err)
		}
		if !bytes.HasPrefix(b, []byte("go test fuzz v1\n[]byte(")) {
			t.Fatalf("seed-%s is not in Go's fuzz corpus format", name)
		}
	}
}
