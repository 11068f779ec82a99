package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

const (
	// KeySize is the size in bytes of a master key, a subkey and raw key material.
	KeySize = 32
	// NonceSize is the size of the random AES-GCM nonce prepended to sealed data.
	NonceSize = 12
	// TagSize is the size of the AES-GCM authentication tag appended to sealed data.
	TagSize = 16
	// Overhead is what Seal adds to a plaintext under an encrypting Cipher:
	// nonce (12) + tag (16). The NoEncryption cipher adds nothing; use
	// (*Cipher).Overhead when the cipher may be either.
	Overhead = NonceSize + TagSize

	// infoPrefix prefixes the HKDF info string of every subkey.
	infoPrefix = "crayfish/v1/"
)

// ErrAuth is returned (wrapped) by Open when a sealed message does not
// authenticate: the key is wrong, or the bytes or their AAD were changed.
var ErrAuth = errors.New("crypto: authentication failed: wrong key or corrupted/tampered data")

// MasterKey is the 32-byte repository master key. It never encrypts data
// itself: subkeys for each purpose are derived from it with HKDF-SHA256
// (see Cipher). It is stored only wrapped, in key files (see KeyFile).
type MasterKey struct {
	key [KeySize]byte
}

// NewMasterKey returns a new random master key.
func NewMasterKey() (*MasterKey, error) {
	mk := &MasterKey{}
	if _, err := rand.Read(mk.key[:]); err != nil { // never fails since Go 1.24; kept for clarity
		return nil, fmt.Errorf("crypto: generating master key: %w", err)
	}
	return mk, nil
}

// Equal reports whether mk and other hold the same key (constant time).
func (mk *MasterKey) Equal(other *MasterKey) bool {
	if mk == nil || other == nil {
		return mk == other
	}
	return subtle.ConstantTimeCompare(mk.key[:], other.key[:]) == 1
}

// String hides the key so that it cannot leak through logs.
func (mk MasterKey) String() string { return "crypto.MasterKey{redacted}" }

// Format hides the key from every fmt verb (%v, %x, %#v, ...).
func (mk MasterKey) Format(f fmt.State, verb rune) { io.WriteString(f, mk.String()) }

// Cipher derives the subkey for purpose ("data", "index", "snapshot", ...)
// of the repository identified by repoID and returns an AES-256-GCM cipher
// using it:
//
//	subkey = HKDF-SHA256(secret = master key, salt = repoID, info = "crayfish/v1/" + purpose, 32 bytes)
//
// Distinct purposes give independent keys, so a sealed index can never be
// opened as a blob and vice versa, even before AAD is checked.
func (mk *MasterKey) Cipher(repoID []byte, purpose string) (*Cipher, error) {
	if len(repoID) == 0 {
		return nil, errors.New("crypto: empty repository id")
	}
	if purpose == "" {
		return nil, errors.New("crypto: empty key purpose")
	}
	sub, err := hkdf.Key(sha256.New, mk.key[:], repoID, infoPrefix+purpose, KeySize)
	if err != nil {
		return nil, fmt.Errorf("crypto: deriving %q subkey: %w", purpose, err)
	}
	defer clear(sub)
	return NewCipher(sub)
}

// Cipher seals and opens messages. An encrypting Cipher uses AES-256-GCM
// with a fresh random 96-bit nonce per message; sealed = nonce ‖ ciphertext ‖ tag.
// The NoEncryption cipher passes bytes through unchanged and ignores the AAD.
//
// A Cipher is safe for concurrent use. A key must not seal more than 2^32
// messages (random-nonce bound); with 4 MiB blobs that is 16 PiB per key.
type Cipher struct {
	aead cipher.AEAD // nil: no encryption
}

var noEncryption = &Cipher{}

// NewCipher returns an AES-256-GCM cipher (random nonces) using key, which
// must be KeySize bytes. Most callers derive ciphers with MasterKey.Cipher;
// this constructor exists for key wrapping and for tests that need a fixed key.
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("crypto: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	return &Cipher{aead: aead}, nil
}

// NoEncryption returns the pass-through cipher of unencrypted repositories:
// Seal and Open copy their input unchanged and ignore the AAD, and
// Overhead is 0. Callers must still verify the SHA-256 of every plaintext,
// which is all the integrity an unencrypted repository has.
func NoEncryption() *Cipher { return noEncryption }

func (c *Cipher) check() {
	if c == nil {
		panic("crypto: nil *Cipher (use crypto.NoEncryption() for unencrypted repositories)")
	}
}

// Encrypted reports whether c encrypts (false for NoEncryption).
func (c *Cipher) Encrypted() bool {
	c.check()
	return c.aead != nil
}

// Overhead is the number of bytes Seal adds: Overhead (28) when encrypting, 0 otherwise.
func (c *Cipher) Overhead() int {
	c.check()
	if c.aead == nil {
		return 0
	}
	return Overhead
}

// Seal appends the sealed form of plaintext, authenticated together with
// aad, to dst and returns the result: nonce[12] ‖ ciphertext ‖ tag[16].
// To reuse plaintext's storage use plaintext[:0] as dst only if the
// capacity leaves room for the overhead; otherwise dst and plaintext must
// not overlap.
func (c *Cipher) Seal(dst, plaintext, aad []byte) []byte {
	c.check()
	if c.aead == nil {
		return append(dst, plaintext...)
	}
	return c.aead.Seal(dst, nil, plaintext, aad)
}

// Open authenticates and decrypts sealed (as produced by Seal with the same
// aad), appends the plaintext to dst and returns the result. A failure wraps
// ErrAuth. dst and sealed must not overlap, except dst = sealed[:0].
func (c *Cipher) Open(dst, sealed, aad []byte) ([]byte, error) {
	c.check()
	if c.aead == nil {
		return append(dst, sealed...), nil
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w (%d bytes, shorter than nonce and tag)", ErrAuth, len(sealed))
	}
	out, err := c.aead.Open(dst, nil, sealed, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
