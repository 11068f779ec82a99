package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzKeyMaterial is the key material of the raw seed key file; the
// fuzzer's secret is hashed to it when it is "km" (so mutations of the key
// file keep meeting the right key) and to something else otherwise.
var fuzzKeyMaterial = bytes.Repeat([]byte{0x5a}, KeySize)

func fuzzSecret(secret []byte) (raw []byte, password []byte) {
	if string(secret) == "km" {
		return fuzzKeyMaterial, nil
	}
	h := sha256.Sum256(secret)
	return h[:], secret
}

// FuzzKeyFile feeds arbitrary bytes to the parsers of keys/<id> (the
// strict ParseKeyFile and the lenient json.Unmarshal the repository lists
// keys with, both followed by Unwrap, which validates first) and of a key
// file on disk (DecodeKeyMaterial). Nothing may panic. A parsed key file
// validates, marshals and parses back to the same bytes; Unwrap of an
// invalid key file fails before any key derivation; with a valid one, a
// wrong secret fails with ErrWrongPassword and the seeds' secret unwraps
// the seeds' master key. Key material that decodes is 32 bytes and
// encodes back to what decodes the same.
func FuzzKeyFile(f *testing.F) {
	mk := &MasterKey{}
	copy(mk.key[:], bytes.Repeat([]byte{0xa5}, KeySize))
	raw, err := WrapWithKeyFile(mk, fuzzKeyMaterial, "seed")
	if err != nil {
		f.Fatal(err)
	}
	pw, err := WrapWithPassword(mk, []byte("km"), ScryptParams{N: 16, R: 1, P: 1}, "")
	if err != nil {
		f.Fatal(err)
	}
	for _, kf := range []*KeyFile{raw, pw} {
		b, err := kf.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte("km"))
		f.Add(b, []byte("wrong"))
	}
	f.Add(EncodeKeyMaterial(fuzzKeyMaterial), []byte("km"))
	f.Add([]byte(`{"version":1,"id":"0011223344556677","kdf":"scrypt","n":4194304,"r":1024,"p":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA==","wrapped":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), []byte("x"))
	f.Add([]byte(`{"version":1,"id":"0011223344556677","kdf":"raw","wrapped":null,"created":"0001-01-01T00:00:00Z"} {}`), []byte("km"))
	f.Fuzz(func(t *testing.T, data, secret []byte) {
		rawSecret, password := fuzzSecret(secret)
		unwrap := func(kf *KeyFile) {
			verr := kf.Validate()
			if verr == nil && kf.KDF == KDFScrypt && kf.N*kf.R*kf.P > 1<<10 {
				return // valid but too slow to derive thousands of times a second
			}
			var s []byte
			switch {
			case kf.KDF == KDFRaw:
				s = rawSecret
			case password != nil:
				s = password
			default:
				s = []byte("km")
			}
			got, err := kf.Unwrap(s)
			switch {
			case verr != nil && err == nil:
				t.Fatalf("Unwrap accepted an invalid key file (%v)", verr)
			case verr != nil && errors.Is(err, ErrWrongPassword):
				t.Fatalf("Unwrap derived a key before validating: %v", err)
			case verr == nil && err != nil && !errors.Is(err, ErrWrongPassword):
				t.Fatalf("Unwrap of a valid key file: %v, want ErrWrongPassword", err)
			case err == nil && !got.Equal(mk) && string(secret) == "km":
				// A forged key file can wrap any key; only one that
				// authenticates under the seeds' secret must be ours —
				// unless the fuzzer forged a tag, which it cannot.
				t.Fatal("unwrapped a master key that is not the seeds'")
			}
		}

		if kf, err := ParseKeyFile(data); err == nil {
			if err := kf.Validate(); err != nil {
				t.Fatalf("ParseKeyFile accepted an invalid key file: %v", err)
			}
			b, err := kf.Marshal()
			if err != nil {
				t.Fatalf("a parsed key file does not marshal: %v", err)
			}
			kf2, err := ParseKeyFile(b)
			if err != nil {
				t.Fatalf("a marshalled key file does not parse: %v", err)
			}
			b2, _ := kf2.Marshal()
			if !bytes.Equal(b, b2) {
				t.Fatalf("key file does not round-trip:\n%s\n%s", b, b2)
			}
			unwrap(kf)
		}
		var lenient KeyFile
		if json.Unmarshal(data, &lenient) == nil {
			unwrap(&lenient)
		}

		if km, err := DecodeKeyMaterial(data); err == nil {
			if len(km) != KeySize {
				t.Fatalf("key material of %d bytes", len(km))
			}
			again, err := DecodeKeyMaterial(EncodeKeyMaterial(km))
			if err != nil || !bytes.Equal(again, km) {
				t.Fatalf("key material does not round-trip: %v", err)
			}
		}
	})
}
