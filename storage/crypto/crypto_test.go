package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// cheap scrypt parameters for tests.
var testParams = ScryptParams{N: 1 << 10, R: 8, P: 1}

var repoID = []byte("0123456789abcdef0123456789abcdef")

func mustCipher(t testing.TB, mk *MasterKey, purpose string) *Cipher {
	t.Helper()
	c, err := mk.Cipher(repoID, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpenRoundTrip(t *testing.T) {
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	c := mustCipher(t, mk, "data")
	if !c.Encrypted() || c.Overhead() != Overhead || Overhead != 28 {
		t.Fatalf("Encrypted=%v Overhead=%d", c.Encrypted(), c.Overhead())
	}
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 1 << 20} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		aad := []byte(fmt.Sprintf("aad-%d", n))
		sealed := c.Seal(nil, pt, aad)
		if len(sealed) != n+Overhead {
			t.Fatalf("n=%d: sealed %d bytes", n, len(sealed))
		}
		if n > 16 && bytes.Contains(sealed, pt[:16]) {
			t.Fatalf("n=%d: plaintext visible in sealed output", n)
		}
		got, err := c.Open(nil, sealed, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("n=%d: Open = %v, %v", n, len(got), err)
		}
		// Appending to dst works and leaves the prefix alone.
		prefix := []byte("prefix")
		s2 := c.Seal(append([]byte(nil), prefix...), pt, aad)
		if !bytes.HasPrefix(s2, prefix) {
			t.Fatal("Seal clobbered dst")
		}
		g2, err := c.Open(append([]byte(nil), prefix...), s2[len(prefix):], aad)
		if err != nil || !bytes.Equal(g2, append(prefix, pt...)) {
			t.Fatalf("Open with dst: %v", err)
		}
	}
}

func TestOpenFailures(t *testing.T) {
	mk, _ := NewMasterKey()
	c := mustCipher(t, mk, "data")
	pt := []byte("the quick brown fox")
	aad := []byte("blob-id")
	sealed := c.Seal(nil, pt, aad)

	check := func(name string, c *Cipher, sealed, aad []byte) {
		t.Helper()
		if _, err := c.Open(nil, sealed, aad); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: err = %v, want ErrAuth", name, err)
		}
	}
	check("aad mismatch", c, sealed, []byte("blob-iD"))
	check("nil aad", c, sealed, nil)
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		check(fmt.Sprintf("bit flip at %d", i), c, bad, aad)
	}
	check("truncated", c, sealed[:len(sealed)-1], aad)
	check("too short", c, sealed[:Overhead-1], aad)
	check("empty", c, nil, aad)
	check("extended", c, append(bytes.Clone(sealed), 0), aad)

	other, _ := NewMasterKey()
	check("other master key", mustCipher(t, other, "data"), sealed, aad)
	check("other purpose", mustCipher(t, mk, "index"), sealed, aad)
	c2, _ := mk.Cipher([]byte("another repository id"), "data")
	check("other repository", c2, sealed, aad)
	if !strings.Contains(ErrAuth.Error(), "wrong key or corrupted/tampered data") {
		t.Errorf("ErrAuth message: %q", ErrAuth)
	}
}

func TestSubkeysDeterministicAndDistinct(t *testing.T) {
	mk, _ := NewMasterKey()
	a := mustCipher(t, mk, "data")
	b := mustCipher(t, mk, "data")
	sealed := a.Seal(nil, []byte("x"), nil)
	if _, err := b.Open(nil, sealed, nil); err != nil {
		t.Fatal("same purpose must derive the same key:", err)
	}
	if _, err := mk.Cipher(nil, "data"); err == nil {
		t.Error("empty repository id accepted")
	}
	if _, err := mk.Cipher(repoID, ""); err == nil {
		t.Error("empty purpose accepted")
	}
}

func TestNonceUniqueness(t *testing.T) {
	mk, _ := NewMasterKey()
	c := mustCipher(t, mk, "data")
	seen := map[string]bool{}
	pt := []byte("same plaintext every time")
	var first []byte
	for i := 0; i < 10000; i++ {
		s := c.Seal(nil, pt, nil)
		n := string(s[:NonceSize])
		if seen[n] {
			t.Fatalf("nonce repeated after %d seals", i)
		}
		seen[n] = true
		if first == nil {
			first = s
		} else if bytes.Equal(first[NonceSize:], s[NonceSize:]) {
			t.Fatal("identical ciphertexts for identical plaintexts")
		}
	}
}

func TestNoEncryption(t *testing.T) {
	c := NoEncryption()
	if c.Encrypted() || c.Overhead() != 0 {
		t.Fatalf("Encrypted=%v Overhead=%d", c.Encrypted(), c.Overhead())
	}
	pt := []byte("plain bytes")
	s := c.Seal([]byte("p:"), pt, []byte("aad ignored"))
	if string(s) != "p:plain bytes" {
		t.Fatalf("Seal = %q", s)
	}
	got, err := c.Open(nil, pt, []byte("other aad"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	got[0] = 'X'
	if pt[0] == 'X' {
		t.Fatal("Open aliases its input")
	}
	defer func() {
		if recover() == nil {
			t.Error("nil *Cipher did not panic")
		}
	}()
	var nilC *Cipher
	nilC.Seal(nil, nil, nil)
}

func TestNewCipherKeySize(t *testing.T) {
	if _, err := NewCipher(make([]byte, 16)); err == nil {
		t.Error("16-byte key accepted")
	}
	if _, err := NewCipher(make([]byte, 32)); err != nil {
		t.Error(err)
	}
}

func TestMasterKeyRedacted(t *testing.T) {
	mk, _ := NewMasterKey()
	for _, f := range []string{"%v", "%s", "%+v", "%#v", "%x"} {
		if s := fmt.Sprintf(f, mk); !strings.Contains(s, "redacted") {
			t.Errorf("%s prints %q", f, s)
		}
	}
}

func TestPasswordRoundTrip(t *testing.T) {
	mk, _ := NewMasterKey()
	kf, err := WrapWithPassword(mk, []byte("correct horse"), testParams, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if kf.Version != 1 || kf.KDF != KDFScrypt || kf.N != 1<<10 || kf.R != 8 || kf.P != 1 || len(kf.Salt) != 32 ||
		len(kf.ID) != 16 || len(kf.Wrapped) != 60 || kf.Label != "laptop" || kf.Created.IsZero() {
		t.Fatalf("key file: %+v", kf)
	}
	// Through JSON, as stored in keys/<id>.
	b, err := kf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	kf2, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kf2.Unwrap([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(mk) {
		t.Fatal("unwrapped a different key")
	}
	if _, err := kf2.Unwrap([]byte("wrong horse")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := kf2.Unwrap(nil); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("empty password: %v", err)
	}
	if !strings.Contains(ErrWrongPassword.Error(), "wrong password") {
		t.Errorf("message %q", ErrWrongPassword)
	}
	// Two wraps of one key differ (id, salt, nonce) but unwrap to the same key.
	kf3, _ := WrapWithPassword(mk, []byte("correct horse"), testParams, "")
	if kf3.ID == kf.ID || bytes.Equal(kf3.Salt, kf.Salt) || bytes.Equal(kf3.Wrapped, kf.Wrapped) {
		t.Fatal("key files not randomized")
	}
	if _, err := WrapWithPassword(mk, nil, testParams, ""); err == nil {
		t.Error("empty password accepted")
	}
}

func TestDefaultScryptParams(t *testing.T) {
	if testing.Short() {
		t.Skip("default scrypt costs ~128 MiB")
	}
	mk, _ := NewMasterKey()
	kf, err := WrapWithPassword(mk, []byte("pw"), ScryptParams{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if kf.N != 1<<17 || kf.R != 8 || kf.P != 1 {
		t.Fatalf("defaults: N=%d r=%d p=%d", kf.N, kf.R, kf.P)
	}
}

func TestTamperedKeyFile(t *testing.T) {
	mk, _ := NewMasterKey()
	pw := []byte("pw")
	kf, _ := WrapWithPassword(mk, pw, testParams, "")
	for i := range kf.Wrapped {
		bad := *kf
		bad.Wrapped = bytes.Clone(kf.Wrapped)
		bad.Wrapped[i] ^= 0x80
		if _, err := bad.Unwrap(pw); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	// The AAD binds the id: a wrapped key moved under another id fails.
	moved := *kf
	moved.ID = "0000000000000000"
	if _, err := moved.Unwrap(pw); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("changed id: %v", err)
	}
	salted := *kf
	salted.Salt = bytes.Clone(kf.Salt)
	salted.Salt[0] ^= 1
	if _, err := salted.Unwrap(pw); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("changed salt: %v", err)
	}
	cheaper := *kf
	cheaper.N = kf.N / 2
	if _, err := cheaper.Unwrap(pw); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("changed N: %v", err)
	}
}

func TestHostileKeyFileParams(t *testing.T) {
	mk, _ := NewMasterKey()
	kf, _ := WrapWithPassword(mk, []byte("pw"), testParams, "")
	cases := []struct {
		name string
		edit func(k *KeyFile)
	}{
		{"N huge", func(k *KeyFile) { k.N = 1 << 30 }},
		{"N 2^23", func(k *KeyFile) { k.N = 1 << 23 }},
		{"N not power of 2", func(k *KeyFile) { k.N = 1000 }},
		{"N zero", func(k *KeyFile) { k.N = 0 }},
		{"N negative", func(k *KeyFile) { k.N = -1024 }},
		{"r*p huge", func(k *KeyFile) { k.R, k.P = 1<<9, 1<<9 }},
		{"p huge", func(k *KeyFile) { k.P = 1 << 40 }},
		{"r negative", func(k *KeyFile) { k.R = -8 }},
		{"memory", func(k *KeyFile) { k.N, k.R = 1<<22, 16 }},
		{"short salt", func(k *KeyFile) { k.Salt = k.Salt[:8] }},
		{"version", func(k *KeyFile) { k.Version = 2 }},
		{"kdf", func(k *KeyFile) { k.KDF = "argon2" }},
		{"id", func(k *KeyFile) { k.ID = "../../etc" }},
		{"id hex", func(k *KeyFile) { k.ID = "zzzzzzzzzzzzzzzz" }},
		{"wrapped length", func(k *KeyFile) { k.Wrapped = k.Wrapped[:59] }},
		{"raw with params", func(k *KeyFile) { k.KDF = KDFRaw }},
	}
	for _, tc := range cases {
		k := *kf
		tc.edit(&k)
		_, err := k.Unwrap([]byte("pw"))
		if err == nil || errors.Is(err, ErrWrongPassword) {
			t.Errorf("%s: err = %v, want a validation error", tc.name, err)
		}
		b, _ := json.Marshal(&k)
		if _, err := ParseKeyFile(b); err == nil {
			t.Errorf("%s: ParseKeyFile accepted it", tc.name)
		}
	}
	if _, err := WrapWithPassword(mk, []byte("pw"), ScryptParams{N: 1 << 23}, ""); err == nil {
		t.Error("WrapWithPassword accepted N=2^23")
	}
	for _, bad := range []string{`{"version":1,"extra":true}`, `not json`, `{"version":1} {}`} {
		if _, err := ParseKeyFile([]byte(bad)); err == nil {
			t.Errorf("ParseKeyFile(%s) accepted", bad)
		}
	}
}

func TestKeyMaterialRoundTrip(t *testing.T) {
	mk, _ := NewMasterKey()
	km := GenerateKeyMaterial()
	if len(km) != 32 || bytes.Equal(km, GenerateKeyMaterial()) {
		t.Fatal("GenerateKeyMaterial")
	}
	kf, err := WrapWithKeyFile(mk, km, "agent")
	if err != nil {
		t.Fatal(err)
	}
	if kf.KDF != KDFRaw || kf.N != 0 || kf.Salt != nil {
		t.Fatalf("key file %+v", kf)
	}
	b, _ := kf.Marshal()
	kf2, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	enc := EncodeKeyMaterial(km)
	if len(enc) != 65 || enc[64] != '\n' {
		t.Fatalf("encoded %q", enc)
	}
	for _, form := range [][]byte{enc, enc[:64], append(bytes.Clone(enc[:64]), '\r', '\n'), bytes.ToUpper(enc)} {
		dec, err := DecodeKeyMaterial(form)
		if err != nil || !bytes.Equal(dec, km) {
			t.Fatalf("decode %q: %v", form, err)
		}
	}
	got, err := kf2.Unwrap(km)
	if err != nil || !got.Equal(mk) {
		t.Fatalf("unwrap: %v", err)
	}
	wrong := GenerateKeyMaterial()
	if _, err := kf2.Unwrap(wrong); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong material: %v", err)
	}
	if _, err := kf2.Unwrap(enc); !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "DecodeKeyMaterial") {
		t.Fatalf("undecoded material: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 64), strings.Repeat("a", 66)} {
		if _, err := DecodeKeyMaterial([]byte(bad)); err == nil {
			t.Errorf("DecodeKeyMaterial(%q) accepted", bad)
		}
	}
	if _, err := WrapWithKeyFile(mk, km[:31], ""); err == nil {
		t.Error("31-byte material accepted")
	}
}

func BenchmarkSeal4MiB(b *testing.B) {
	mk, _ := NewMasterKey()
	c := mustCipher(b, mk, "data")
	pt := make([]byte, 4<<20)
	aad := []byte("aad")
	dst := make([]byte, 0, len(pt)+Overhead)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		dst = c.Seal(dst[:0], pt, aad)
	}
}

func BenchmarkOpen4MiB(b *testing.B) {
	mk, _ := NewMasterKey()
	c := mustCipher(b, mk, "data")
	pt := make([]byte, 4<<20)
	aad := []byte("aad")
	sealed := c.Seal(nil, pt, aad)
	dst := make([]byte, 0, len(pt))
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		var err error
		if dst, err = c.Open(dst[:0], sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}
