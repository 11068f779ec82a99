package storagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestRandomBytes(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 13, 64} {
		a := RandomBytes(rand.New(rand.NewPCG(1, 2)), n)
		b := RandomBytes(rand.New(rand.NewPCG(1, 2)), n)
		if len(a) != n || !bytes.Equal(a, b) {
			t.Fatalf("n=%d: %d bytes, reproducible %v", n, len(a), bytes.Equal(a, b))
		}
		if n >= 13 && bytes.Count(a[8:], []byte{0}) == n-8 {
			t.Fatalf("n=%d: the tail is not filled", n)
		}
	}
}

func TestCiphers(t *testing.T) {
	cs := Ciphers(t, "storagetest-key-of-32-bytes-long")
	if !cs["encrypted"].Encrypted() || cs["plain"].Encrypted() {
		t.Fatal("modes mixed up")
	}
}

// fatalTB records a Fatal and stops the helper, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

type stop struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(stop{})
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stop{})
}

func checkFails(t *testing.T, dir string, seeds map[string][]byte) string {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != (stop{}) {
				panic(r)
			}
		}()
		CheckFuzzCorpus(f, dir, seeds)
	}()
	return f.msg
}

func TestCheckFuzzCorpus(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "seed-a"), []byte("go test fuzz v1\n[]byte(\"x\")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed-bad"), []byte("not a corpus file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := checkFails(t, dir, map[string][]byte{"a": []byte("x")}); msg != "" {
		t.Fatalf("a good corpus failed: %s", msg)
	}
	if msg := checkFails(t, dir, map[string][]byte{"missing": []byte("x")}); msg == "" {
		t.Fatal("a missing seed file passed")
	}
	if msg := checkFails(t, dir, map[string][]byte{"bad": []byte("x")}); msg == "" {
		t.Fatal("a seed file in the wrong format passed")
	}
}
