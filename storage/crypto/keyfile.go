package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/crayfish-backup/crayfish/storage/internal/header"
)

// KeyFileVersion is the key file schema version written by this code.
const KeyFileVersion = 1

// KDF names recorded in KeyFile.KDF.
const (
	KDFScrypt = "scrypt" // KEK = scrypt(password, Salt, N, R, P, 32)
	KDFRaw    = "raw"    // KEK = the 32 bytes of key material themselves
)

// Default scrypt parameters (WrapWithPassword fills zero fields with these).
const (
	DefaultScryptN = 1 << 17
	DefaultScryptR = 8
	DefaultScryptP = 1
)

// Limits applied to scrypt parameters read from a key file before any work
// is done, so a hostile key file cannot make Unwrap burn unbounded CPU or
// memory.
const (
	MaxScryptN      = 1 << 22
	MaxScryptRP     = 1 << 10 // r*p
	MaxScryptMemory = 1 << 32 // 128*N*r bytes (4 GiB: N=2^22 with r=8)
	saltSize        = 32
	keyIDSize       = 8
	wrappedSize     = Overhead + KeySize
	keyAADPrefix    = "crayfish/v1/key/"
)

// ErrWrongPassword is returned (wrapped) by Unwrap when the master key does
// not authenticate under the key derived from the given secret.
var ErrWrongPassword = errors.New("crypto: wrong password or key material: the master key could not be unwrapped (or the key file is damaged)")

// ScryptParams are the cost parameters of scrypt. Zero fields mean the defaults
// (N=2^17, r=8, p=1: about 128 MiB and a few hundred milliseconds).
type ScryptParams struct {
	N, R, P int
}

func (p ScryptParams) withDefaults() ScryptParams {
	if p.N == 0 {
		p.N = DefaultScryptN
	}
	if p.R == 0 {
		p.R = DefaultScryptR
	}
	if p.P == 0 {
		p.P = DefaultScryptP
	}
	return p
}

// Validate rejects parameters scrypt would refuse and absurd ones a hostile
// key file could use to exhaust CPU or memory.
func (p ScryptParams) Validate() error {
	switch {
	case p.N < 2 || p.N&(p.N-1) != 0:
		return fmt.Errorf("crypto: scrypt N=%d: must be a power of two > 1", p.N)
	case p.N > MaxScryptN:
		return fmt.Errorf("crypto: scrypt N=%d exceeds the limit %d", p.N, MaxScryptN)
	case p.R < 1 || p.P < 1:
		return fmt.Errorf("crypto: scrypt r=%d p=%d: must be ≥ 1", p.R, p.P)
	case p.R > MaxScryptRP || p.P > MaxScryptRP || p.R*p.P > MaxScryptRP:
		return fmt.Errorf("crypto: scrypt r*p=%d*%d exceeds the limit %d", p.R, p.P, MaxScryptRP)
	case uint64(128)*uint64(p.N)*uint64(p.R) > MaxScryptMemory:
		return fmt.Errorf("crypto: scrypt N=%d r=%d needs %d MiB, over the limit of %d MiB",
			p.N, p.R, 128*uint64(p.N)*uint64(p.R)>>20, uint64(MaxScryptMemory)>>20)
	}
	return nil
}

// KeyFile is the JSON content of one repository key object (keys/<id>): the
// master key wrapped (AES-256-GCM, AAD "crayfish/v1/key/" + ID) under a
// key-encryption key derived from a password (KDF "scrypt") or given
// directly as 32 bytes of key material (KDF "raw"). Several key files may
// wrap the same master key; changing a password means writing a new key
// file, never re-encrypting data.
type KeyFile struct {
	Version  int       `json:"version"`
	ID       string    `json:"id"`  // 16 lowercase hex characters (8 random bytes)
	KDF      string    `json:"kdf"` // KDFScrypt or KDFRaw
	N        int       `json:"n,omitempty"`
	R        int       `json:"r,omitempty"`
	P        int       `json:"p,omitempty"`
	Salt     []byte    `json:"salt,omitempty"`
	Wrapped  []byte    `json:"wrapped"` // nonce ‖ AES-256-GCM(master key) ‖ tag, 60 bytes
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"` // informational, set by the caller
	Username string    `json:"username,omitempty"` // informational, set by the caller
	Label    string    `json:"label,omitempty"`
}

// WrapWithPassword wraps mk under a key derived from password with scrypt.
// Zero fields of p take the defaults. Hostname and Username are left for
// the caller to fill in (this package does no system I/O).
func WrapWithPassword(mk *MasterKey, password []byte, p ScryptParams, label string) (*KeyFile, error) {
	if mk == nil {
		return nil, errors.New("crypto: nil master key")
	}
	if len(password) == 0 {
		return nil, errors.New("crypto: empty password")
	}
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	kf := newKeyFile(KDFScrypt, label)
	kf.N, kf.R, kf.P = p.N, p.R, p.P
	kf.Salt = make([]byte, saltSize)
	rand.Read(kf.Salt)
	kek, err := scryptKey(password, kf.Salt, p.N, p.R, p.P)
	if err != nil {
		return nil, fmt.Errorf("crypto: scrypt: %w", err)
	}
	defer clear(kek)
	if err := kf.wrap(mk, kek); err != nil {
		return nil, err
	}
	return kf, nil
}

// WrapWithKeyFile wraps mk directly under keyMaterial (exactly 32 bytes,
// e.g. from GenerateKeyMaterial), for unattended agents that read a key
// file instead of a password.
func WrapWithKeyFile(mk *MasterKey, keyMaterial []byte, label string) (*KeyFile, error) {
	if mk == nil {
		return nil, errors.New("crypto: nil master key")
	}
	if len(keyMaterial) != KeySize {
		return nil, fmt.Errorf("crypto: key material is %d bytes, want %d", len(keyMaterial), KeySize)
	}
	kf := newKeyFile(KDFRaw, label)
	if err := kf.wrap(mk, keyMaterial); err != nil {
		return nil, err
	}
	return kf, nil
}

func newKeyFile(kdf, label string) *KeyFile {
	id := make([]byte, keyIDSize)
	rand.Read(id)
	kf := &KeyFile{
		Version: KeyFileVersion,
		ID:      hex.EncodeToString(id),
		KDF:     kdf,
		Created: time.Now().UTC().Truncate(time.Second),
		Label:   label,
	}
	return kf
}

func (kf *KeyFile) aad() []byte { return header.AAD(nil, keyAADPrefix, kf.ID) }

func (kf *KeyFile) wrap(mk *MasterKey, kek []byte) error {
	c, err := NewCipher(kek)
	if err != nil {
		return err
	}
	kf.Wrapped = c.Seal(nil, mk.key[:], kf.aad())
	return nil
}

// Validate checks the structure of a key file read from the repository
// (version, id, KDF and its parameters, sizes) without doing any
// key-derivation work.
func (kf *KeyFile) Validate() error {
	if kf.Version != KeyFileVersion {
		return fmt.Errorf("crypto: key file version %d not supported (want %d)", kf.Version, KeyFileVersion)
	}
	if len(kf.ID) != 2*keyIDSize {
		return fmt.Errorf("crypto: key file id %q: want %d hex characters", kf.ID, 2*keyIDSize)
	}
	if _, err := hex.DecodeString(kf.ID); err != nil {
		return fmt.Errorf("crypto: key file id %q: %w", kf.ID, err)
	}
	if len(kf.Wrapped) != wrappedSize {
		return fmt.Errorf("crypto: key file %s: wrapped key is %d bytes, want %d", kf.ID, len(kf.Wrapped), wrappedSize)
	}
	switch kf.KDF {
	case KDFScrypt:
		if err := (ScryptParams{N: kf.N, R: kf.R, P: kf.P}).Validate(); err != nil {
			return fmt.Errorf("key file %s: %w", kf.ID, err)
		}
		if len(kf.Salt) < 16 || len(kf.Salt) > 1024 {
			return fmt.Errorf("crypto: key file %s: salt is %d bytes, want 16..1024", kf.ID, len(kf.Salt))
		}
	case KDFRaw:
		if kf.N != 0 || kf.R != 0 || kf.P != 0 || len(kf.Salt) != 0 {
			return fmt.Errorf("crypto: key file %s: kdf %q takes no parameters", kf.ID, kf.KDF)
		}
	default:
		return fmt.Errorf("crypto: key file %s: unknown kdf %q", kf.ID, kf.KDF)
	}
	return nil
}

// Unwrap returns the master key. secret is the password for KDF "scrypt"
// and the 32 bytes of key material (see DecodeKeyMaterial) for KDF "raw".
// A secret that does not unwrap the key gives an error wrapping
// ErrWrongPassword. The key file is validated first, so hostile scrypt
// parameters are refused before any work is done.
func (kf *KeyFile) Unwrap(secret []byte) (*MasterKey, error) {
	if err := kf.Validate(); err != nil {
		return nil, err
	}
	var kek []byte
	switch kf.KDF {
	case KDFScrypt:
		var err error
		kek, err = scryptKey(secret, kf.Salt, kf.N, kf.R, kf.P)
		if err != nil {
			return nil, fmt.Errorf("crypto: scrypt: %w", err)
		}
		defer clear(kek)
	case KDFRaw:
		if len(secret) != KeySize {
			return nil, fmt.Errorf("%w: key file %s needs %d bytes of key material, got %d (decode the key-file contents with DecodeKeyMaterial)",
				ErrWrongPassword, kf.ID, KeySize, len(secret))
		}
		kek = secret
	}
	c, err := NewCipher(kek)
	if err != nil {
		return nil, err
	}
	plain, err := c.Open(nil, kf.Wrapped, kf.aad())
	if err != nil {
		return nil, fmt.Errorf("%w (key %s)", ErrWrongPassword, kf.ID)
	}
	defer clear(plain)
	if len(plain) != KeySize {
		return nil, fmt.Errorf("crypto: key file %s: unwrapped key is %d bytes", kf.ID, len(plain))
	}
	mk := &MasterKey{}
	copy(mk.key[:], plain)
	return mk, nil
}

// Marshal encodes the key file as JSON (the content of keys/<id>).
func (kf *KeyFile) Marshal() ([]byte, error) {
	if err := kf.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(kf, "", "  ")
}

// ParseKeyFile decodes and validates a key file read from the repository.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("crypto: key file of %d bytes is implausibly large", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var kf KeyFile
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("crypto: decoding key file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("crypto: decoding key file: trailing data after JSON object")
	}
	if err := kf.Validate(); err != nil {
		return nil, err
	}
	return &kf, nil
}

// GenerateKeyMaterial returns 32 random bytes for WrapWithKeyFile.
func GenerateKeyMaterial() []byte {
	b := make([]byte, KeySize)
	rand.Read(b)
	return b
}

// EncodeKeyMaterial returns the on-disk form of key material: 64 lowercase
// hex characters and a newline.
func EncodeKeyMaterial(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b))+1)
	hex.Encode(out, b)
	out[len(out)-1] = '\n'
	return out
}

// DecodeKeyMaterial parses the on-disk form of key material: 64 hex
// characters, optionally surrounded by whitespace (a trailing newline or CRLF).
func DecodeKeyMaterial(data []byte) ([]byte, error) {
	s := bytes.TrimSpace(data)
	if len(s) != 2*KeySize {
		return nil, fmt.Errorf("crypto: key material: want %d hex characters, got %d", 2*KeySize, len(s))
	}
	b := make([]byte, KeySize)
	if _, err := hex.Decode(b, s); err != nil {
		return nil, fmt.Errorf("crypto: key material: %w", err)
	}
	return b, nil
}

// scryptKey derives a key-encryption key with scrypt and hands its work
// memory (128·N·r bytes: 128 MiB at the default parameters) back to the
// operating system at once: the garbage collector alone would keep it
// mapped, and an agent unlocks its repository once and then runs for
// months beside a database.
func scryptKey(secret, salt []byte, n, r, p int) ([]byte, error) {
	kek, err := scrypt.Key(secret, salt, n, r, p, KeySize)
	debug.FreeOSMemory()
	return kek, err
}
