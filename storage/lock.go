package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
)

// Repository locks coordinate writers (backups, restores, verify) with the
// garbage collector across processes and clusters, as restic's do; the
// cluster's Raft FSM additionally serializes operations inside one cluster.
// docs/gc-safety.md gives the whole argument.
//
// A lock is the object locks/<id>, plain JSON (lockFile). Its time is the
// object's modification time as the storage reports it in a listing: no
// local clock is ever compared with a storage time.

const locksPrefix = "locks/"

// LockKind is shared (backups, restores, verify: any number coexist) or
// exclusive (gc, cleanup: excludes every other lock).
type LockKind string

const (
	LockShared    LockKind = "shared"
	LockExclusive LockKind = "exclusive"
)

// Lock timing defaults. A holder re-writes its lock every LockRefreshEvery;
// a lock not re-written for LockStaleAfter (by the storage's clock) is
// stale: acquirers ignore it and garbage collection deletes it.
const (
	LockStaleAfter   = 10 * time.Minute
	LockRefreshEvery = 2 * time.Minute
)

// The effective timings (tests shorten them).
var (
	lockStaleAfter   = LockStaleAfter
	lockRefreshEvery = LockRefreshEvery
)

// holderSlack is how much earlier than an acquirer a holder considers its
// own lock lost: a refresh that finds the previous write older than
// lockStaleAfter - holderSlack fails, so a lock some acquirer may already
// have judged stale is never silently revived (several storage front ends
// may disagree by a little on "now").
func holderSlack() time.Duration { return lockStaleAfter / 10 }

var (
	// ErrLocked: a conflicting lock that is not stale holds the repository.
	// The error names the holder; callers retry later (with jitter).
	ErrLocked = errors.New("storage: repository is locked")
	// ErrLockLost: the caller's lock was removed or went stale, so garbage
	// collection may have run since it was last refreshed: the holder must
	// abort its operation (never commit a snapshot after this error).
	ErrLockLost = errors.New("storage: repository lock lost")
)

// lockFile is the content of locks/<id>. Created and Refreshed are the
// writer's local clock, for people only: staleness uses the object's
// storage modification time.
type lockFile struct {
	Kind      LockKind  `json:"kind"`
	Owner     string    `json:"owner"`
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
}

// LockInfo describes one lock object.
type LockInfo struct {
	ID      string    `json:"id"`
	Kind    LockKind  `json:"kind"` // "invalid" if the object does not parse
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`  // holder's clock
	ModTime time.Time `json:"mod_time"` // storage's clock: the last write
	Stale   bool      `json:"stale"`
}

const lockInvalid LockKind = "invalid"

func lockKey(id string) string { return locksPrefix + id }

func checkLockID(id string) error {
	if !ValidBackupID(id) {
		return fmt.Errorf("lock id %q: want 1-128 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)", id)
	}
	return nil
}

// conflicts reports whether a lock of kind a excludes one of kind b. An
// unparseable lock conflicts with everything (it might be exclusive).
func conflicts(a, b LockKind) bool {
	return a != LockShared || b != LockShared
}

// Lock takes the repository lock id of the given kind. Writers take a
// shared lock before they read the index for deduplication (and must then
// call SyncIndex) and hold it until their snapshot is written; gc and
// cleanup take an exclusive one.
//
// It writes locks/<id>, lists locks/ and looks at every other lock that is
// not stale by the storage's clock ("now" is the modification time of the
// object just written): if one conflicts (exclusive against anything), it
// removes its own lock again and returns an error wrapping ErrLocked that
// names the holder. Two acquirers that race both see each other and both
// back off; callers retry with jitter.
//
// Taking a lock id that this caller already holds, with the same kind,
// refreshes it (RefreshLock). owner is free text (node, operation).
func (r *Repository) Lock(ctx context.Context, id string, kind LockKind, owner string) error {
	if err := checkLockID(id); err != nil {
		return err
	}
	if kind != LockShared && kind != LockExclusive {
		return fmt.Errorf("lock %s: unknown kind %q", id, kind)
	}
	if lf, err := r.readLock(ctx, id); err == nil && lf.Kind == kind {
		if err := r.RefreshLock(ctx, id); err == nil {
			return nil
		} else if !errors.Is(err, ErrLockLost) {
			return err
		}
		// Lost (stale or removed meanwhile): acquire it afresh below.
	} else if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		return err
	}
	now := time.Now().UTC()
	b, _ := json.Marshal(lockFile{Kind: kind, Owner: owner, Created: now, Refreshed: now})
	if err := r.be.Put(ctx, lockKey(id), b, false); err != nil {
		return fmt.Errorf("lock %s: write: %w", id, err)
	}
	if kind == LockExclusive && injected("gc-ignores-locks") {
		return nil // the injected bug: an exclusive lock that ignores others
	}
	if err := r.checkLockConflicts(ctx, id, kind); err != nil {
		// Back off. Our lock must not linger (it would block others until
		// stale); a failed delete is reported alongside.
		if derr := r.be.Delete(context.WithoutCancel(ctx), lockKey(id)); derr != nil && !errors.Is(derr, backend.ErrNotFound) {
			return fmt.Errorf("%w (and removing our lock %s failed: %v)", err, id, derr)
		}
		return err
	}
	return nil
}

// checkLockConflicts lists every lock and fails with ErrLocked if one
// that is not stale conflicts with ours (id, kind).
func (r *Repository) checkLockConflicts(ctx context.Context, id string, kind LockKind) error {
	objs, err := r.listLocks(ctx)
	if err != nil {
		return fmt.Errorf("lock %s: %w", id, err)
	}
	own, ok := objs[lockKey(id)]
	if !ok {
		return fmt.Errorf("lock %s: our lock is missing from the listing just after writing it (is the storage's listing consistent?)", id)
	}
	now := own.ModTime
	for key, oi := range objs {
		if key == lockKey(id) || now.Sub(oi.ModTime) > lockStaleAfter {
			continue
		}
		other := strings.TrimPrefix(key, locksPrefix)
		lf, err := r.readLock(ctx, other)
		if errors.Is(err, ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("lock %s: read lock %s: %w", id, other, err)
		}
		if conflicts(kind, lf.Kind) {
			return fmt.Errorf("%w: %s lock %q held by %q, written %s before ours (by the storage's clock); it goes stale after %s without refresh",
				ErrLocked, lf.Kind, other, lf.Owner, now.Sub(oi.ModTime).Round(time.Second), lockStaleAfter)
		}
	}
	return nil
}

// readLock reads locks/<id>; an unparseable object gives kind "invalid"
// and an error wrapping ErrCorrupt, a missing one ErrNotFound.
func (r *Repository) readLock(ctx context.Context, id string) (lockFile, error) {
	b, err := r.be.Get(ctx, lockKey(id))
	if errors.Is(err, backend.ErrNotFound) {
		return lockFile{}, fmt.Errorf("lock %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return lockFile{}, fmt.Errorf("lock %s: %w", id, err)
	}
	var lf lockFile
	if err := json.Unmarshal(b, &lf); err != nil || (lf.Kind != LockShared && lf.Kind != LockExclusive) {
		return lockFile{Kind: lockInvalid}, fmt.Errorf("lock %s: %w: not a lock object", id, ErrCorrupt)
	}
	return lf, nil
}

// listLocks returns every lock object by key.
func (r *Repository) listLocks(ctx context.Context) (map[string]backend.ObjectInfo, error) {
	objs := map[string]backend.ObjectInfo{}
	err := r.be.List(ctx, locksPrefix, func(oi backend.ObjectInfo) error {
		objs[oi.Key] = oi
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return objs, nil
}

// statKey returns the listing entry of exactly key.
func (r *Repository) statKey(ctx context.Context, key string) (backend.ObjectInfo, error) {
	var found *backend.ObjectInfo
	err := r.be.List(ctx, key, func(oi backend.ObjectInfo) error {
		if oi.Key == key {
			found = &oi
		}
		return nil
	})
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	if found == nil {
		return backend.ObjectInfo{}, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return *found, nil
}

// RefreshLock re-writes the caller's lock id so that it does not go stale;
// holders call it every LockRefreshEvery, and a writer calls it once more
// immediately before committing its snapshot.
//
// It fails with an error wrapping ErrLockLost when the lock is gone (also
// wrapping ErrNotFound: someone judged it stale and removed it) or when its
// previous write is so old, by the storage's clock, that an acquirer may
// have judged it stale (garbage collection may be running or have run); in
// that case it removes the lock, so the loss is final and every later
// refresh fails too. The holder must abort: whatever it deduplicated is
// suspect, and only a new lock followed by SyncIndex starts over safely.
// The check compares two storage times (the previous and the new
// modification time), never the local clock.
func (r *Repository) RefreshLock(ctx context.Context, id string) error {
	if err := checkLockID(id); err != nil {
		return err
	}
	key := lockKey(id)
	prev, err := r.statKey(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("refresh lock %s: %w: %w (removed as stale?)", id, ErrLockLost, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("refresh lock %s: %w", id, err)
	}
	lf, err := r.readLock(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("refresh lock %s: %w: %w (removed as stale?)", id, ErrLockLost, err)
	}
	if err != nil {
		return fmt.Errorf("refresh lock %s: %w", id, err)
	}
	lf.Refreshed = time.Now().UTC()
	b, _ := json.Marshal(lf)
	if err := r.be.Put(ctx, key, b, false); err != nil {
		return fmt.Errorf("refresh lock %s: %w", id, err)
	}
	cur, err := r.statKey(ctx, key)
	if err != nil {
		return fmt.Errorf("refresh lock %s: list after writing: %w", id, err)
	}
	if age := cur.ModTime.Sub(prev.ModTime); age > lockStaleAfter-holderSlack() {
		// The loss is final: remove the lock we just revived, so that every
		// later refresh fails too (a caller that ignored this error must
		// not be able to commit after a successful refresh).
		if derr := r.be.Delete(context.WithoutCancel(ctx), key); derr != nil && !errors.Is(derr, backend.ErrNotFound) {
			return fmt.Errorf("refresh lock %s: %w (and removing it failed: %v)", id, ErrLockLost, derr)
		}
		return fmt.Errorf("refresh lock %s: %w: not refreshed for %s by the storage's clock (stale after %s): garbage collection may have run",
			id, ErrLockLost, age.Round(time.Second), lockStaleAfter)
	}
	return nil
}

// PutManifestLocked commits a backup under lock id: it refreshes the lock
// and writes the snapshot only if the lock still holds (RefreshLock), so a
// writer whose lock lapsed never commits blobs a garbage collection may
// have deleted. Writers should commit through it (or call RefreshLock
// themselves immediately before PutManifest).
func (r *Repository) PutManifestLocked(ctx context.Context, lockID string, m *Manifest) error {
	if err := r.RefreshLock(ctx, lockID); err != nil {
		return fmt.Errorf("put snapshot %s: %w", m.BackupID, err)
	}
	return r.PutManifest(ctx, m)
}

// Unlock removes lock id. A missing lock is fine.
func (r *Repository) Unlock(ctx context.Context, id string) error {
	if err := checkLockID(id); err != nil {
		return err
	}
	if err := r.be.Delete(ctx, lockKey(id)); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	return nil
}

// Locks lists every lock (for status and debugging). Stale is judged
// against the storage's clock, read by writing and removing a probe
// object; if that write fails, against the newest lock.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	objs, err := r.listLocks(ctx)
	if err != nil {
		return nil, err
	}
	var newest time.Time
	for _, oi := range objs {
		if oi.ModTime.After(newest) {
			newest = oi.ModTime
		}
	}
	now, err := r.storageNow(ctx)
	if err != nil || now.Before(newest) {
		now = newest
	}
	var out []LockInfo
	for key, oi := range objs {
		id := strings.TrimPrefix(key, locksPrefix)
		lf, err := r.readLock(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		out = append(out, LockInfo{ID: id, Kind: lf.Kind, Owner: lf.Owner, Created: lf.Created,
			ModTime: oi.ModTime, Stale: now.Sub(oi.ModTime) > lockStaleAfter})
	}
	slices.SortFunc(out, func(a, b LockInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// clockPrefix holds short-lived probe objects whose modification time
// tells the storage's clock.
const clockPrefix = "gc/clock-"

// storageNow reads the storage's clock: it writes a probe object, lists it
// and removes it.
func (r *Repository) storageNow(ctx context.Context) (time.Time, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	key := clockPrefix + hex.EncodeToString(rnd[:])
	if err := r.be.Put(ctx, key, []byte("clock probe"), false); err != nil {
		return time.Time{}, err
	}
	defer r.be.Delete(context.WithoutCancel(ctx), key)
	oi, err := r.statKey(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	return oi.ModTime, nil
}

// lockNow refreshes lock id, held by the caller, and returns the storage's
// "now": the lock's modification time after the refresh.
func (r *Repository) lockNow(ctx context.Context, id string) (time.Time, error) {
	if err := r.RefreshLock(ctx, id); err != nil {
		return time.Time{}, err
	}
	oi, err := r.statKey(ctx, lockKey(id))
	if err != nil {
		return time.Time{}, err
	}
	return oi.ModTime, nil
}
