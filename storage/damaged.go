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
	"strings"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// ---------------------------------------------------------------------------
// Damage records (damaged/<pack>/<blob>): the copy of a blob in one pack
// was found corrupt or missing. Deduplication treats such a copy as absent,
// so the next backup of the content stores a new copy; index loads prefer
// an undamaged copy. A record names one (pack, blob) pair, so it never
// condemns a good copy written later. docs/repository-format.md has the
// byte layout.

const (
	damagedPrefix     = "damaged/"
	damagedMagic      = "CFDM"
	damagedHeaderSize = 16
	damagedAAD        = "crayfish/v1/damaged/"
)

// DamagedBlob is one damage record.
type DamagedBlob struct {
	Blob     ObjectID      `json:"blob"`
	Pack     ObjectID      `json:"pack"`
	PackType pack.BlobType `json:"pack_type"`
	Reason   string        `json:"reason"`
	Found    time.Time     `json:"found"`
	Host     string        `json:"host,omitempty"`
	// Superseded: the index locates a copy of the blob in another,
	// undamaged pack (filled in by ListDamaged, not stored).
	Superseded bool `json:"superseded"`
}

// damageSet is the in-memory view of the records: blob → packs whose copy
// is damaged.
type damageSet map[ObjectID]map[ObjectID]bool

func (d damageSet) has(blob, pack ObjectID) bool { return d[blob][pack] }

func (d damageSet) add(blob, pack ObjectID) {
	m := d[blob]
	if m == nil {
		m = map[ObjectID]bool{}
		d[blob] = m
	}
	m[pack] = true
}

func damagedKey(pack, blob ObjectID) string {
	return damagedPrefix + pack.String() + "/" + blob.String()
}

// parseDamagedKey parses damaged/<pack>/<blob>.
func parseDamagedKey(key string) (pack, blob ObjectID, ok bool) {
	rest, ok := strings.CutPrefix(key, damagedPrefix)
	if !ok {
		return pack, blob, false
	}
	p, b, ok := strings.Cut(rest, "/")
	if !ok {
		return pack, blob, false
	}
	var err1, err2 error
	pack, err1 = ParseObjectID(p)
	blob, err2 = ParseObjectID(b)
	return pack, blob, err1 == nil && err2 == nil
}

func (r *Repository) damagedHeader() []byte {
	return objectHeader(damagedMagic, damagedHeaderSize, r.cfg.Encrypted())
}

// damagedRecordAAD binds a record to its key: a record renamed to condemn
// another copy does not authenticate.
func damagedRecordAAD(h []byte, key string) []byte {
	return append(append(slices.Clone(h), damagedAAD...), strings.TrimPrefix(key, damagedPrefix)...)
}

func (r *Repository) encodeDamaged(d DamagedBlob) ([]byte, error) {
	d.Superseded = false
	plain, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	h := r.damagedHeader()
	return r.idxCi.Seal(h, plain, damagedRecordAAD(h, damagedKey(d.Pack, d.Blob))), nil
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
	if damagedKey(d.Pack, d.Blob) != key {
		return d, fmt.Errorf("%s: names another blob or pack: %w", key, ErrCorrupt)
	}
	return d, nil
}

// listDamagedKeys returns the set of (blob, pack) pairs recorded as
// damaged. Only keys are listed: the key says everything deduplication
// needs (a forged key can only cause a re-upload, never a loss).
func (r *Repository) listDamagedKeys(ctx context.Context) (damageSet, error) {
	d := damageSet{}
	err := r.be.List(ctx, damagedPrefix, func(oi backend.ObjectInfo) error {
		if p, b, ok := parseDamagedKey(oi.Key); ok {
			d.add(b, p)
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
	loc, ok := r.idx.Lookup(id)
	return ok && !r.damaged.has(id, loc.Pack)
}

// addLocation indexes id at loc in x, preferring an undamaged copy: a
// location replaces an existing one only when the existing copy is
// recorded damaged and the new one is not.
func addLocation(x *index.Index, d damageSet, id ObjectID, loc index.Location) error {
	added, err := x.Add(id, loc)
	if err != nil || added {
		return err
	}
	if old, _ := x.Lookup(id); d.has(id, old.Pack) && !d.has(id, loc.Pack) {
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
	host, _ := os.Hostname()
	now := time.Now().UTC().Truncate(time.Second)
	var recs []DamagedBlob
	r.mu.Lock()
	for _, id := range ids {
		if loc, ok := r.idx.Lookup(id); ok && !r.damaged.has(id, loc.Pack) {
			recs = append(recs, DamagedBlob{Blob: id, Pack: loc.Pack, PackType: loc.PackType, Reason: reason, Found: now, Host: host})
		}
	}
	r.mu.Unlock()
	var (
		mu   sync.Mutex
		errs []error
	)
	parallelEach(ctx, 8, recs, func(d DamagedBlob) {
		err := r.putDamaged(ctx, d)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		r.mu.Lock()
		r.damaged.add(d.Blob, d.Pack)
		r.mu.Unlock()
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
	key := damagedKey(d.Pack, d.Blob)
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
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	parallelEach(ctx, 8, idx, func(i int) {
		b, err := r.be.Get(ctx, keys[i])
		if err == nil {
			out[i], err = r.decodeDamaged(keys[i], b)
		}
		errs[i] = err
	})
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
		d.Superseded = ok && loc.Pack != d.Pack && !r.damaged.has(d.Blob, loc.Pack)
		res = append(res, d)
	}
	return res, ctx.Err()
}

// deleteDamaged removes the records of the given packs.
func (r *Repository) deleteDamaged(ctx context.Context, packs map[ObjectID]bool) (int, error) {
	var keys []string
	err := r.be.List(ctx, damagedPrefix, func(oi backend.ObjectInfo) error {
		if p, _, ok := parseDamagedKey(oi.Key); ok && packs[p] {
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
