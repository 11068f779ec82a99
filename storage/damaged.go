package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// ---------------------------------------------------------------------------
// Damage records (damaged/<pack id>/<offset>): the copy of a blob stored
// at that offset of that pack was found corrupt or missing. Deduplication
// treats such a copy as absent, so the next backup of the content stores a
// new copy; index loads prefer an undamaged copy. A record names one copy,
// so it never condemns a good copy written later, and its name holds no
// blob id (blob ids are hashes of plaintext and never appear in object
// names). docs/repository-format.md has the byte layout.

const (
	damagedPrefix     = "damaged/"
	damagedMagic      = "CFDM"
	damagedHeaderSize = header.Size
	damagedAAD        = "crayfish/v1/damaged/"
)

// DamagedBlob is one damage record.
type DamagedBlob struct {
	Blob     ObjectID      `json:"blob"`
	Pack     ObjectID      `json:"pack"`
	Offset   uint32        `json:"offset"` // of the blob's record in the pack
	PackType pack.BlobType `json:"pack_type"`
	Reason   string        `json:"reason"`
	Found    time.Time     `json:"found"`
	Host     string        `json:"host,omitempty"`
	// Superseded: the index locates a copy of the blob in another,
	// undamaged pack (filled in by ListDamaged, not stored).
	Superseded bool `json:"superseded"`
}

// storedCopy is one stored copy of a blob: a record in a pack.
type storedCopy struct {
	pack   ObjectID
	offset uint32
}

func copyAt(loc index.Location) storedCopy { return storedCopy{pack: loc.Pack, offset: loc.Offset} }

// damageSet is the in-memory view of the records: the damaged copies.
type damageSet map[storedCopy]bool

func (d damageSet) at(loc index.Location) bool { return d[copyAt(loc)] }

func damagedKey(c storedCopy) string {
	return fmt.Sprintf("%s%s/%08x", damagedPrefix, c.pack, c.offset)
}

// parseDamagedKey parses damaged/<pack id>/<offset, 8 hex>.
func parseDamagedKey(key string) (storedCopy, bool) {
	rest, ok := strings.CutPrefix(key, damagedPrefix)
	if !ok {
		return storedCopy{}, false
	}
	p, o, ok := strings.Cut(rest, "/")
	if !ok || len(o) != 8 {
		return storedCopy{}, false
	}
	pid, err := ParseObjectID(p)
	if err != nil || pid.String() != p {
		// Upper-case hex would name the same copy under a second key,
		// which clearing the damage (by the canonical key) would miss.
		return storedCopy{}, false
	}
	off, err := strconv.ParseUint(o, 16, 32)
	if err != nil || fmt.Sprintf("%08x", off) != o {
		return storedCopy{}, false
	}
	return storedCopy{pack: pid, offset: uint32(off)}, true
}

func (r *Repository) damagedHeader() []byte { return header.New(damagedMagic, r.cfg.Encrypted()) }

// damagedRecordAAD binds a record to its key: a record renamed to condemn
// another copy does not authenticate.
func damagedRecordAAD(h []byte, key string) []byte {
	return header.AAD(h, damagedAAD, strings.TrimPrefix(key, damagedPrefix))
}

func (r *Repository) encodeDamaged(d DamagedBlob) ([]byte, error) {
	d.Superseded = false
	plain, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	h := r.damagedHeader()
	return r.idxCi.Seal(h, plain, damagedRecordAAD(h, damagedKey(storedCopy{d.Pack, d.Offset}))), nil
}

func (r *Repository) decodeDamaged(key string, b []byte) (DamagedBlob, error) {
	var d DamagedBlob
	if len(b) < damagedHeaderSize || !bytes.Equal(b[:damagedHeaderSize], r.damagedHeader()) {
		return d, fmt.Errorf("%s: bad header: %w", key, ErrCorrupt)
	}
	h := b[:damagedHeaderSize]
	plain, err := r.idxCi.Open(nil, b[damagedHeaderSize:], damagedRecordAAD(h, key))
	if err != nil {
		return d, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	if err := json.Unmarshal(plain, &d); err != nil {
		return d, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	if damagedKey(storedCopy{d.Pack, d.Offset}) != key {
		return d, fmt.Errorf("%s: names another copy: %w", key, ErrCorrupt)
	}
	return d, nil
}

// listDamagedKeys returns the copies recorded as damaged. Only keys are
// listed: the key says everything deduplication needs (a forged key can
// only cause a re-upload, never a loss).
func (r *Repository) listDamagedKeys(ctx context.Context) (damageSet, error) {
	d := damageSet{}
	err := r.be.List(ctx, damagedPrefix, func(oi backend.ObjectInfo) error {
		if c, ok := parseDamagedKey(oi.Key); ok {
			d[c] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list damaged: %w", err)
	}
	return d, nil
}

// goodLocked reports whether the index locates blob id in a copy not
// recorded as damaged. The caller holds r.mu.
func (r *Repository) goodLocked(id ObjectID) bool {
	if len(r.damaged) == 0 {
		return r.idx.Has(id) // the common case, on every chunk of a backup
	}
	loc, ok := r.idx.Lookup(id)
	return ok && !r.damaged.at(loc)
}

// addLocation indexes id at loc in x, preferring an undamaged copy: a
// location replaces an existing one only when the existing copy is
// recorded damaged and the new one is not.
func addLocation(x *index.Index, d damageSet, id ObjectID, loc index.Location) error {
	added, err := x.Add(id, loc)
	if err != nil || added {
		return err
	}
	if old, _ := x.Lookup(id); d.at(old) && !d.at(loc) {
		return x.Replace(id, loc)
	}
	return nil
}

type noDamageRecordsKey struct{}

// withoutDamageRecords marks ctx so that a failed LoadBlob records nothing
// (dry runs write nothing).
func withoutDamageRecords(ctx context.Context) context.Context {
	return context.WithValue(ctx, noDamageRecordsKey{}, true)
}

func recordsDamage(ctx context.Context) bool { return ctx.Value(noDamageRecordsKey{}) == nil }

// MarkDamaged records that the copies of blobs ids the index currently
// locates are corrupt or missing. From then on HasBlob is false for them
// (a backup stores the content again) until a copy in another pack is
// indexed. Blobs no index lists are skipped (they are absent already).
// Safe with concurrent writers: each record is its own object, and
// writing one twice writes the same record.
func (r *Repository) MarkDamaged(ctx context.Context, ids []ObjectID, reason string) error {
	var recs []DamagedBlob
	r.mu.Lock()
	for _, id := range ids {
		if loc, ok := r.idx.Lookup(id); ok && !r.damaged.at(loc) {
			recs = append(recs, damageRecord(id, loc, reason))
		}
	}
	r.mu.Unlock()
	return r.putDamagedAll(ctx, recs)
}

// damageRecord describes the copy at loc of blob id as damaged.
func damageRecord(id ObjectID, loc index.Location, reason string) DamagedBlob {
	host, _ := os.Hostname()
	return DamagedBlob{Blob: id, Pack: loc.Pack, Offset: loc.Offset, PackType: loc.PackType, Reason: reason,
		Found: time.Now().UTC().Truncate(time.Second), Host: host}
}

// putDamagedAll writes the records and adds them to this handle's view.
func (r *Repository) putDamagedAll(ctx context.Context, recs []DamagedBlob) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	_ = pool.Each(ctx, 8, slices.Values(recs), func(_ context.Context, d DamagedBlob) error {
		err := r.putDamaged(ctx, d)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		r.mu.Lock()
		r.damaged[storedCopy{d.Pack, d.Offset}] = true
		r.mu.Unlock()
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mark damaged: %w", err)
	}
	return ctx.Err()
}

func (r *Repository) putDamaged(ctx context.Context, d DamagedBlob) error {
	b, err := r.encodeDamaged(d)
	if err != nil {
		return err
	}
	key := damagedKey(storedCopy{d.Pack, d.Offset})
	if err := r.be.Put(ctx, key, b, false); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// ListDamaged returns every damage record, sorted by pack then blob, with
// Superseded set where this handle's index locates a copy elsewhere. A
// record that does not authenticate is an error.
func (r *Repository) ListDamaged(ctx context.Context) ([]DamagedBlob, error) {
	var keys []string
	err := r.be.List(ctx, damagedPrefix, func(oi backend.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list damaged: %w", err)
	}
	sort.Strings(keys)
	out := make([]DamagedBlob, len(keys))
	errs := make([]error, len(keys))
	err = pool.Each(ctx, 8, pool.Indices(len(keys)), func(_ context.Context, i int) error {
		b, err := r.be.Get(ctx, keys[i])
		if err == nil {
			out[i], err = r.decodeDamaged(keys[i], b)
		}
		errs[i] = err
		return nil
	})
	if err != nil {
		// Records never handed out are zero: listing them would name a
		// copy nobody recorded.
		return nil, fmt.Errorf("list damaged: %w", err)
	}
	var res []DamagedBlob
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, d := range out {
		if errors.Is(errs[i], backend.ErrNotFound) {
			continue // removed by a repair meanwhile
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		loc, ok := r.idx.Lookup(d.Blob)
		d.Superseded = ok && copyAt(loc) != (storedCopy{d.Pack, d.Offset}) && !r.damaged.at(loc)
		res = append(res, d)
	}
	return res, ctx.Err()
}

// deleteDamaged removes the records of the given packs.
func (r *Repository) deleteDamaged(ctx context.Context, packs map[ObjectID]bool) (int, error) {
	var keys []string
	err := r.be.List(ctx, damagedPrefix, func(oi backend.ObjectInfo) error {
		if c, ok := parseDamagedKey(oi.Key); ok && packs[c.pack] {
			keys = append(keys, oi.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list damaged: %w", err)
	}
	if err := r.deleteAll(ctx, keys, func() {}); err != nil {
		return 0, err
	}
	return len(keys), nil
}
