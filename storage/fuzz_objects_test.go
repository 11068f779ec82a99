package storage

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/crypto"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
)

// fuzzKM is the key material of the repository FuzzOpenRepository's
// seeds come from.
var fuzzKM = bytes.Repeat([]byte{7}, 32)

// fuzzRepoObjects returns the config and key file of a new encrypted
// (key material fuzzKM) and a new unencrypted repository.
func fuzzRepoObjects(tb testing.TB) (encCfg, encKey, plainCfg []byte) {
	ctx := context.Background()
	get := func(r *Repository, prefix string) []byte {
		var out []byte
		err := r.be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			b, err := r.be.Get(ctx, oi.Key)
			out = b
			return err
		})
		if err != nil || out == nil {
			tb.Fatalf("read %s: %v", prefix, err)
		}
		return out
	}
	enc, err := Init(ctx, "mem://", InitOptions{Secret: Secret{KeyMaterial: fuzzKM}})
	if err != nil {
		tb.Fatal(err)
	}
	defer enc.Close()
	plain, err := Init(ctx, "mem://", InitOptions{NoEncryption: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer plain.Close()
	return get(enc, configKey), get(enc, keysPrefix), get(plain, configKey)
}

// FuzzOpenRepository feeds an arbitrary config object and key file to
// open, as Open reads them from the object store (secret: 0 none, 1 the
// seeds' key material, 2 another key material, 3 a password). Nothing may
// panic; every error wraps one of the package's errors; a repository that
// opens has a supported config (format, version, hash, chunk size,
// encryption, a 32-byte id), is encrypted exactly when its config says so
// and then was opened by the one key file, with the seeds' secret.
func FuzzOpenRepository(f *testing.F) {
	encCfg, encKey, plainCfg := fuzzRepoObjects(f)
	f.Add(encCfg, encKey, byte(1))
	f.Add(encCfg, encKey, byte(2))
	f.Add(encCfg, encKey, byte(0))
	f.Add(plainCfg, []byte{}, byte(0))
	f.Add(plainCfg, []byte{}, byte(3))
	f.Add(plainCfg, encKey, byte(0))
	f.Add([]byte(strings.Replace(string(encCfg), `"version": 1`, `"version": 0`, 1)), encKey, byte(1))
	f.Add([]byte(`{"format":"crayfish","version":1,"id":"zz"}`), []byte(`{}`), byte(1))
	f.Fuzz(func(t *testing.T, cfg, key []byte, secret byte) {
		if len(cfg)+len(key) > 1<<16 {
			return
		}
		// Key files with valid but costly scrypt parameters would make
		// each execution take seconds: the limits themselves are
		// FuzzKeyFile's (and TestHostileKeyFileParams').
		var kf crypto.KeyFile
		if json.Unmarshal(key, &kf) == nil && kf.KDF == crypto.KDFScrypt && kf.Validate() == nil && kf.N*kf.R*kf.P > 1<<10 {
			return
		}
		ctx := context.Background()
		be, err := backend.Open(ctx, "mem://")
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		if len(cfg) > 0 {
			if err := be.Put(ctx, configKey, cfg, true); err != nil {
				t.Fatal(err)
			}
		}
		keyID := "0123456789abcdef"
		if len(kf.ID) > 0 && backend.CheckKey(keysPrefix+kf.ID) == nil {
			keyID = kf.ID
		}
		if len(key) > 0 {
			if err := be.Put(ctx, keysPrefix+keyID, key, true); err != nil {
				t.Fatal(err)
			}
		}
		var opts OpenOptions
		switch secret % 4 {
		case 1:
			opts.Secret.KeyMaterial = fuzzKM
		case 2:
			opts.Secret.KeyMaterial = bytes.Repeat([]byte{8}, 32)
		case 3:
			opts.Secret.Password = []byte("pw")
		}
		r, err := open(ctx, "mem://", be, opts)
		if err != nil {
			for _, want := range []error{ErrNotInitialized, ErrCorrupt, ErrUnsupportedVersion, ErrNeedSecret, ErrWrongPassword} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("open error wraps none of the package's errors: %v", err)
		}
		c := r.Config()
		id, err := hex.DecodeString(c.ID)
		switch {
		case c.Format != RepositoryFormat || c.Version != RepositoryVersion || c.Hash != RepositoryHash || c.ChunkSize != ChunkSize:
			t.Fatalf("opened an unsupported config %+v", c)
		case err != nil || len(id) != 32:
			t.Fatalf("opened a config with id %q", c.ID)
		case c.Encrypted() != (r.master != nil):
			t.Fatalf("config says encrypted=%v, master key %v", c.Encrypted(), r.master != nil)
		case c.Encrypted() && (c.Encryption != "aes-256-gcm" || r.keyID != keyID || secret%4 != 1):
			t.Fatalf("opened encrypted %q with key %q, secret %d", c.Encryption, r.keyID, secret%4)
		case !c.Encrypted() && (len(key) > 0 || secret%4 != 0):
			t.Fatalf("opened an unencrypted repository with a key file (%d bytes) or a secret (%d)", len(key), secret%4)
		}
	})
}

// fuzzObjectRepo is an unencrypted repository (so the fuzzer reaches the
// JSON behind the identity seal) the objects are written to.
var fuzzObjectRepo *Repository

const fuzzLogArchiveID = "20261205T120000.000000Z-n1"

// FuzzRepositoryObjects feeds arbitrary bytes to the readers of the small
// repository objects (kind picks one): a lock (locks/<id>), a damage
// record (damaged/<pack>/<offset>), the garbage collection plan (gc/plan),
// a log archive (logs/<id>), and a damage record's key. With kind's bit 4
// set the bytes are the object's plaintext, wrapped in a valid header
// (and, for a log archive, compressed), so mutations reach the JSON.
// Nothing may panic; errors wrap ErrCorrupt, ErrInvalidManifest or
// ErrUnsupportedVersion; what is accepted satisfies the reader's checks:
// a lock is shared or exclusive, a record names the copy its key names, a
// plan deletes only index segments and packs, a log archive validates and
// names itself, and a damage key parses only in its canonical form.
func FuzzRepositoryObjects(f *testing.F) {
	pack := ObjectID{1, 2, 3}
	rec, _ := json.Marshal(DamagedBlob{Blob: ObjectID{9}, Pack: pack, Offset: 0x1234, Reason: "bad tag", Found: time.Unix(1e9, 0).UTC()})
	plan, _ := json.Marshal(gcPlan{Delete: []string{"index/" + strings.Repeat("ab", 32), "data/ab/" + strings.Repeat("ab", 32)}})
	arch, _ := json.Marshal(LogArchive{FormatVersion: LogArchiveFormatVersion, ID: fuzzLogArchiveID, Plugin: "cassandra",
		From: time.Unix(1e9, 0).UTC(), To: time.Unix(1e9+60, 0).UTC(), Node: NodeManifest{NodeID: "n1"}})
	lock, _ := json.Marshal(lockFile{Kind: LockShared, Owner: "n1"})
	f.Add(byte(0), lock)
	f.Add(byte(0x10), []byte(`{"kind":"exclusive"}`))
	f.Add(byte(0x11), rec)
	f.Add(byte(0x12), plan)
	f.Add(byte(0x12), []byte(`{"delete":["config"]}`))
	f.Add(byte(0x13), arch)
	f.Add(byte(4), []byte(damagedKey(storedCopy{pack, 0x1234})))
	f.Add(byte(4), []byte("damaged/"+pack.String()+"/0000123G"))
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		ctx := context.Background()
		if fuzzObjectRepo == nil {
			r, err := Init(ctx, "mem://", InitOptions{NoEncryption: true})
			if err != nil {
				t.Fatal(err)
			}
			fuzzObjectRepo = r
		}
		r := fuzzObjectRepo
		wrap := kind&0x10 != 0
		put := func(key string, b []byte) {
			if err := r.be.Put(ctx, key, b, false); err != nil {
				t.Fatal(err)
			}
		}
		marked := func(err error) {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalidManifest) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error wraps none of the package's errors: %v", err)
			}
		}
		switch kind & 0xf % 5 {
		case 0:
			put(lockKey("fuzz"), data)
			lf, err := r.readLock(ctx, "fuzz")
			if err != nil {
				marked(err)
				return
			}
			if lf.Kind != LockShared && lf.Kind != LockExclusive {
				t.Fatalf("accepted lock kind %q", lf.Kind)
			}
		case 1:
			key := damagedKey(storedCopy{pack, 0x1234})
			obj := data
			if wrap {
				h := r.damagedHeader()
				obj = r.idxCi.Seal(h, data, damagedRecordAAD(h, key))
			}
			d, err := r.decodeDamaged(key, obj)
			if err != nil {
				marked(err)
				return
			}
			if damagedKey(storedCopy{d.Pack, d.Offset}) != key {
				t.Fatalf("accepted a record of another copy: %+v", d)
			}
		case 2:
			obj := data
			if wrap {
				h := r.planHeader()
				obj = r.idxCi.Seal(h, data, planAAD(h))
			}
			put(gcPlanKey, obj)
			p, err := r.readPlan(ctx)
			if err != nil {
				marked(err)
				return
			}
			keys, _ := p.doomed()
			for k := range keys {
				if !strings.HasPrefix(k, indexPrefix) && !strings.HasPrefix(k, dataPrefix) && !strings.HasPrefix(k, metaPrefix) {
					t.Fatalf("plan accepted deleting %q", k)
				}
			}
		case 3:
			obj := data
			if wrap {
				h := r.logArchiveHeader()
				obj = r.snapCi.Seal(h, zenc.EncodeAll(data, nil), header.AAD(h, logArchiveAADTag, fuzzLogArchiveID))
			}
			put(logArchiveKey(fuzzLogArchiveID), obj)
			a, err := r.GetLogArchive(ctx, fuzzLogArchiveID)
			if err != nil {
				marked(err)
				return
			}
			if a.ID != fuzzLogArchiveID || ValidateLogArchive(a) != nil || a.Node.Files != nil {
				t.Fatalf("accepted log archive %+v", a)
			}
		case 4:
			key := string(data)
			c, ok := parseDamagedKey(key)
			if ok && damagedKey(c) != key {
				t.Fatalf("damage key %q parses as %v, which is %q", key, c, damagedKey(c))
			}
		}
	})
}
