package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Errors returned by a Backend wrap one of these where they
// apply (test with errors.Is); every other error is returned as the driver
// gave it, wrapped with the operation and key.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("backend: object not found")
	// ErrExists: Put with ifNotExist found the key already taken.
	ErrExists = errors.New("backend: object already exists")
	// ErrInvalidKey: the key (or List prefix) is not valid; see the package
	// documentation. Never transient.
	ErrInvalidKey = errors.New("backend: invalid key")
)

// Backend is the object store under a repository. Keys are slash-separated
// (see the package documentation for the exact rules). Errors wrap
// ErrNotFound / ErrExists where they apply; every other error is returned as
// is (wrapped with the key). Implementations are safe for concurrent use.
type Backend interface {
	// Put stores data under key atomically (readers never see a partial
	// object). With ifNotExist, an existing key gives an error wrapping
	// ErrExists; otherwise an existing object is replaced.
	Put(ctx context.Context, key string, data []byte, ifNotExist bool) error
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns length bytes from offset; length -1 reads to the end.
	// If the object ends before offset+length, GetRange returns the bytes
	// that exist together with an error wrapping io.ErrUnexpectedEOF (an
	// offset beyond the end gives no bytes and that error). The returned
	// bytes are the caller's to overwrite (a blob is decrypted in place).
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
	// Size returns the object's length in bytes.
	Size(ctx context.Context, key string) (int64, error)
	// Delete removes the object; a missing key gives ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List calls fn for every key with prefix in ascending lexical (byte)
	// order, with its size and modification time; fn returning an error
	// stops the listing and List returns that error unchanged.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Close releases the backend.
	Close() error
}

// ObjectInfo describes one listed object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// maxKeyLen is S3's and GCS's key limit (Azure allows more).
const maxKeyLen = 1024

// CheckKey reports whether key is a valid object key; the error wraps
// ErrInvalidKey.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("%w: key of %d bytes (at most %d)", ErrInvalidKey, len(key), maxKeyLen)
	}
	if err := checkChars(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrInvalidKey, key)
		}
	}
	last := key[strings.LastIndexByte(key, '/')+1:]
	if strings.HasSuffix(last, tmpSuffix) || strings.HasSuffix(last, attrsSuffix) {
		return fmt.Errorf("%w: %q ends in a reserved suffix (%s, %s)", ErrInvalidKey, key, tmpSuffix, attrsSuffix)
	}
	return nil
}

// checkPrefix validates a List prefix: every complete segment must be valid
// in a key; the last, partial one only needs valid characters.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > maxKeyLen {
		return fmt.Errorf("%w: prefix of %d bytes (at most %d)", ErrInvalidKey, len(prefix), maxKeyLen)
	}
	if err := checkChars(prefix); err != nil {
		return err
	}
	segs := strings.Split(prefix, "/")
	for _, seg := range segs[:len(segs)-1] {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: prefix %q has an empty, \".\" or \"..\" segment", ErrInvalidKey, prefix)
		}
	}
	return nil
}

func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == '/':
		default:
			return fmt.Errorf("%w: %q has the character %q at %d (allowed: A-Z a-z 0-9 . _ - /)", ErrInvalidKey, s, c, i)
		}
	}
	if strings.Contains(s, "__0x") {
		return fmt.Errorf("%w: %q contains the reserved sequence \"__0x\"", ErrInvalidKey, s)
	}
	return nil
}

const (
	tmpSuffix   = ".tmp"   // fileblob's temporary files: <target>.<hex nanos>.tmp
	attrsSuffix = ".attrs" // fileblob's metadata sidecars
)
