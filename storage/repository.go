package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/index"
)

// Repository format identity, written in the config object.
const (
	RepositoryFormat  = "crayfish"
	RepositoryVersion = 1
	RepositoryHash    = "sha256"
)

// Key layout. docs/repository-format.md describes every object.
const (
	configKey      = "config"
	keysPrefix     = "keys/"
	dataPrefix     = "data/"
	metaPrefix     = "meta/"
	indexPrefix    = "index/"
	snapshotPrefix = "snapshots/"
)

// More sentinel errors of format v1.
var (
	// ErrWrongPassword: no key of the repository opens with the given secret.
	ErrWrongPassword = errors.New("storage: wrong password or key file: no repository key opens with it")
	// ErrNeedSecret: the repository is encrypted and no secret was given.
	ErrNeedSecret = errors.New("storage: the repository is encrypted: give a password (--password-file or CRAYFISH_PASSWORD) or a key file")
)

// Config is the plaintext `config` object.
type Config struct {
	Format     string    `json:"format"`
	Version    int       `json:"version"`
	ID         string    `json:"id"` // 64 hex characters
	Hash       string    `json:"hash"`
	ChunkSize  int64     `json:"chunk_size"`
	Encryption string    `json:"encryption"` // "aes-256-gcm" or "none"
	CreatedAt  time.Time `json:"created_at"`
}

// Encrypted reports whether blobs are encrypted.
func (c Config) Encrypted() bool { return c.Encryption != "none" }

// Secret opens an encrypted repository: a password (scrypt) or the 32
// bytes of a key file. Give one.
type Secret struct {
	Password    []byte
	KeyMaterial []byte
}

func (s Secret) IsZero() bool { return len(s.Password) == 0 && len(s.KeyMaterial) == 0 }

// InitOptions configure a new repository.
type InitOptions struct {
	Secret Secret
	// NoEncryption must be set explicitly to create a plaintext repository.
	NoEncryption bool
	// KeyLabel describes the first key (e.g. "quickstart").
	KeyLabel string
	// Scrypt overrides the KDF cost (tests use a cheap one).
	Scrypt crypto.ScryptParams
}

// OpenOptions configure Open.
type OpenOptions struct {
	Secret Secret
	// Retry tunes retries of transient backend errors (zero: defaults).
	Retry backend.RetryPolicy
	// RequestsPerSecond caps the requests to the object store (every try
	// of a retried request counts; bursts up to twice the rate, at least
	// one); zero leaves them unlimited.
	RequestsPerSecond float64
	// Backend, if set, is used instead of opening the URL (tests inject faults).
	Backend backend.Backend
}

// Repository is an opened repository. It is safe for concurrent use.
type Repository struct {
	url     string
	be      backend.Backend
	cfg     Config
	repoID  []byte
	keyID   string
	master  *crypto.MasterKey
	data    *crypto.Cipher // blobs, pack footers
	idxCi   *crypto.Cipher // index segments
	snapCi  *crypto.Cipher // snapshots
	cache   *rangeCache
	packers *packers

	segMu sync.Mutex // serializes index segment writes

	mu             sync.Mutex
	idx            *index.Index
	loadedSegments map[string]bool
	session        []sessionPack          // packs uploaded but not yet in a written index segment
	pending        map[ObjectID]pendingAt // blobs saved in this process, not yet in idx
	damaged        damageSet              // copies recorded damaged (damaged/)
}

// Init creates a repository at url. It refuses to touch a URL that
// already holds a config.
func Init(ctx context.Context, url string, opts InitOptions) (*Repository, error) {
	be, err := openBackend(ctx, url, OpenOptions{}, nil)
	if err != nil {
		return nil, err
	}
	if _, err := be.Get(ctx, configKey); err == nil {
		be.Close()
		return nil, fmt.Errorf("init %s: %w: a repository is already there", url, ErrExists)
	} else if !errors.Is(err, backend.ErrNotFound) {
		be.Close()
		return nil, fmt.Errorf("init %s: %w", url, err)
	}
	// Keys without a config are the remains of an interrupted init: a new
	// master key next to them would leave two, and Open might pick either.
	var orphans int
	if err := be.List(ctx, keysPrefix, func(backend.ObjectInfo) error { orphans++; return nil }); err != nil {
		be.Close()
		return nil, fmt.Errorf("init %s: %w", url, err)
	}
	if orphans > 0 {
		be.Close()
		return nil, fmt.Errorf("init %s: %d key objects but no config: an earlier init was interrupted; delete %s and run init again: %w", url, orphans, keysPrefix, ErrExists)
	}
	if !opts.NoEncryption && opts.Secret.IsZero() {
		be.Close()
		return nil, fmt.Errorf("init %s: %w (or pass --no-encryption explicitly)", url, ErrNeedSecret)
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		be.Close()
		return nil, err
	}
	cfg := Config{Format: RepositoryFormat, Version: RepositoryVersion, ID: hex.EncodeToString(id),
		Hash: RepositoryHash, ChunkSize: ChunkSize, Encryption: "aes-256-gcm", CreatedAt: time.Now().UTC().Truncate(time.Second)}
	r := &Repository{url: url, be: be, repoID: id}
	if opts.NoEncryption {
		cfg.Encryption = "none"
	} else {
		mk, err := crypto.NewMasterKey()
		if err != nil {
			be.Close()
			return nil, err
		}
		// The key goes in before the config: a crash in between leaves no
		// half-made repository that Open would accept.
		kf, err := wrapKey(mk, opts.Secret, opts.Scrypt, opts.KeyLabel)
		if err != nil {
			be.Close()
			return nil, err
		}
		if err := r.putKeyFile(ctx, kf); err != nil {
			be.Close()
			return nil, err
		}
		r.master, r.keyID = mk, kf.ID
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := be.Put(ctx, configKey, b, true); err != nil {
		be.Close()
		return nil, fmt.Errorf("init %s: write config: %w", url, err)
	}
	r.cfg = cfg
	if err := r.setup(); err != nil {
		be.Close()
		return nil, err
	}
	return r, nil
}

// Open opens an existing repository: reads the config, unlocks the master
// key and loads the index. It downloads no data pack.
func Open(ctx context.Context, url string, opts OpenOptions) (*Repository, error) {
	be, err := openBackend(ctx, url, opts, opts.Backend)
	if err != nil {
		return nil, err
	}
	r, err := open(ctx, url, be, opts)
	if err != nil {
		be.Close()
		return nil, err
	}
	return r, nil
}

func openBackend(ctx context.Context, url string, opts OpenOptions, be backend.Backend) (backend.Backend, error) {
	if be == nil {
		var err error
		if be, err = backend.Open(ctx, url); err != nil {
			return nil, fmt.Errorf("repository %s: %w", url, err)
		}
	}
	if r := opts.RequestsPerSecond; r > 0 {
		be = backend.WithRateLimit(be, backend.NewRateLimit(r, int(2*r)))
	}
	return backend.WithRetry(be, opts.Retry), nil
}

func open(ctx context.Context, url string, be backend.Backend, opts OpenOptions) (*Repository, error) {
	raw, err := be.Get(ctx, configKey)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("repository %s: %w (create one with crayfish init)", url, ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("repository %s: read config: %w", url, err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("repository %s: config: %w: %v", url, ErrCorrupt, err)
	}
	if cfg.Format != RepositoryFormat || cfg.Version != RepositoryVersion {
		return nil, fmt.Errorf("repository %s: format %q version %d; this build reads %q version %d: %w",
			url, cfg.Format, cfg.Version, RepositoryFormat, RepositoryVersion, ErrUnsupportedVersion)
	}
	if cfg.Hash != RepositoryHash || cfg.ChunkSize != ChunkSize || (cfg.Encryption != "none" && cfg.Encryption != "aes-256-gcm") {
		return nil, fmt.Errorf("repository %s: hash %q chunk size %d encryption %q not supported: %w",
			url, cfg.Hash, cfg.ChunkSize, cfg.Encryption, ErrUnsupportedVersion)
	}
	id, err := hex.DecodeString(cfg.ID)
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("repository %s: config id %q: %w", url, cfg.ID, ErrCorrupt)
	}
	r := &Repository{url: url, be: be, cfg: cfg, repoID: id}
	keys, err := r.listKeyFiles(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Encrypted() {
		if opts.Secret.IsZero() {
			return nil, fmt.Errorf("repository %s: %w", url, ErrNeedSecret)
		}
		for _, kf := range keys {
			if mk, err := unwrapKey(kf, opts.Secret); err == nil {
				r.master, r.keyID = mk, kf.ID
				break
			}
		}
		if r.master == nil {
			return nil, fmt.Errorf("repository %s: %w (%d keys tried)", url, ErrWrongPassword, len(keys))
		}
	} else if len(keys) > 0 {
		// A plaintext config next to key files means someone edited the
		// config to downgrade the repository: refuse.
		return nil, fmt.Errorf("repository %s: config says unencrypted but %d keys exist: %w", url, len(keys), ErrCorrupt)
	} else if !opts.Secret.IsZero() {
		// The caller expects encryption: an unencrypted repository here may
		// be a downgraded one (config edited, keys deleted). Say so.
		return nil, fmt.Errorf("repository %s: it is not encrypted, but a password or key file was given; refusing (run without one if the repository was created with --no-encryption): %w", url, ErrCorrupt)
	}
	if err := r.setup(); err != nil {
		return nil, err
	}
	if err := r.ReloadIndex(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// setup derives the ciphers and empty in-memory state.
func (r *Repository) setup() error {
	if r.master == nil {
		r.data, r.idxCi, r.snapCi = crypto.NoEncryption(), crypto.NoEncryption(), crypto.NoEncryption()
	} else {
		var err error
		if r.data, err = r.master.Cipher(r.repoID, "data"); err != nil {
			return err
		}
		if r.idxCi, err = r.master.Cipher(r.repoID, "index"); err != nil {
			return err
		}
		if r.snapCi, err = r.master.Cipher(r.repoID, "snapshot"); err != nil {
			return err
		}
	}
	r.idx = index.New()
	r.loadedSegments = map[string]bool{}
	r.pending = map[ObjectID]pendingAt{}
	r.damaged = damageSet{}
	r.cache = newRangeCache(rangeCacheBytes)
	r.packers = newPackers()
	return nil
}

// Close releases the backend. Unflushed blobs are lost (never referenced).
func (r *Repository) Close() error { return r.be.Close() }

// URL returns the repository URL.
func (r *Repository) URL() string { return r.url }

// Config returns the repository's config.
func (r *Repository) Config() Config { return r.cfg }

// KeyInfo describes one key file, without secrets.
type KeyInfo struct {
	ID       string    `json:"id"`
	KDF      string    `json:"kdf"`
	Label    string    `json:"label,omitempty"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	Created  time.Time `json:"created"`
	Current  bool      `json:"current"` // the key this process opened the repository with
}

func wrapKey(mk *crypto.MasterKey, s Secret, p crypto.ScryptParams, label string) (*crypto.KeyFile, error) {
	var (
		kf  *crypto.KeyFile
		err error
	)
	switch {
	case len(s.KeyMaterial) > 0:
		kf, err = crypto.WrapWithKeyFile(mk, s.KeyMaterial, label)
	case len(s.Password) > 0:
		kf, err = crypto.WrapWithPassword(mk, s.Password, p, label)
	default:
		return nil, ErrNeedSecret
	}
	if err != nil {
		return nil, err
	}
	kf.Hostname, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		kf.Username = u.Username
	}
	return kf, nil
}

func unwrapKey(kf *crypto.KeyFile, s Secret) (*crypto.MasterKey, error) {
	switch {
	case kf.KDF == "raw" && len(s.KeyMaterial) > 0:
		return kf.Unwrap(s.KeyMaterial)
	case kf.KDF != "raw" && len(s.Password) > 0:
		return kf.Unwrap(s.Password)
	}
	return nil, ErrWrongPassword
}

func (r *Repository) putKeyFile(ctx context.Context, kf *crypto.KeyFile) error {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	if err := r.be.Put(ctx, keysPrefix+kf.ID, b, true); err != nil {
		return fmt.Errorf("write key %s: %w", kf.ID, err)
	}
	return nil
}

func (r *Repository) listKeyFiles(ctx context.Context) ([]*crypto.KeyFile, error) {
	var keys []*crypto.KeyFile
	err := r.be.List(ctx, keysPrefix, func(oi backend.ObjectInfo) error {
		b, err := r.be.Get(ctx, oi.Key)
		if err != nil {
			return err
		}
		kf := new(crypto.KeyFile)
		if err := json.Unmarshal(b, kf); err != nil || kf.ID != strings.TrimPrefix(oi.Key, keysPrefix) {
			return fmt.Errorf("key %s: %w", oi.Key, ErrCorrupt)
		}
		keys = append(keys, kf)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

// Keys lists the repository's keys.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	kfs, err := r.listKeyFiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(kfs))
	for _, kf := range kfs {
		out = append(out, KeyInfo{ID: kf.ID, KDF: kf.KDF, Label: kf.Label, Hostname: kf.Hostname,
			Username: kf.Username, Created: kf.Created, Current: kf.ID == r.keyID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// AddKey wraps the master key with a new secret: access rotates without
// rewriting any data.
func (r *Repository) AddKey(ctx context.Context, s Secret, label string, p crypto.ScryptParams) (KeyInfo, error) {
	if r.master == nil {
		return KeyInfo{}, errors.New("add key: the repository is not encrypted")
	}
	kf, err := wrapKey(r.master, s, p, label)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := r.putKeyFile(ctx, kf); err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{ID: kf.ID, KDF: kf.KDF, Label: kf.Label, Hostname: kf.Hostname, Username: kf.Username, Created: kf.Created}, nil
}

// RemoveKey deletes a key. The key this process opened with, and the last
// key, cannot be removed (that would lock everyone out).
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	if id == r.keyID {
		return fmt.Errorf("remove key %s: it is the key in use; open the repository with another key to remove it", id)
	}
	keys, err := r.listKeyFiles(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		found = found || k.ID == id
	}
	if !found {
		return fmt.Errorf("remove key %s: %w", id, ErrNotFound)
	}
	if len(keys) <= 1 {
		return fmt.Errorf("remove key %s: it is the last key", id)
	}
	return r.be.Delete(ctx, keysPrefix+id)
}
