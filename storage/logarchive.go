package storage

// A log archive (logs/<id>) is what a node ships of its database's log
// between backups: Cassandra's archived commit-log segments, uploaded as
// they close, so a restore to a time reaches past the last backup. It is
// one node's file list (tree blobs and chunks, deduplicated like any
// backup's) with the time range its files cover; it is no backup, and
// listing, restoring and retention of backups never see it. Garbage
// collection keeps what it references; retention deletes it once no kept
// backup can use it (LogArchivesToDelete).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/internal/header"
)

// Log archive object layout: the snapshot's (a 16-byte plaintext header,
// then the sealed, zstd-compressed JSON), with its own magic and AAD tag,
// so neither kind can be passed off as the other.
const (
	logArchivePrefix = "logs/"
	logArchiveMagic  = "CFLA"
	logArchiveAADTag = "crayfish/v1/logarchive/"
	// LogArchiveFormatVersion is the log archive schema version written
	// by this code.
	LogArchiveFormatVersion = 1
)

// LogArchive is the record of one shipment of a node's database log.
type LogArchive struct {
	FormatVersion int    `json:"format_version"`
	ID            string `json:"id"`
	Plugin        string `json:"plugin"`
	// CreatedAt is when the node shipped it (its clock).
	CreatedAt time.Time `json:"created_at"`
	// From and To bound when the log files it holds were closed, by the
	// node's clock: what a restore to a time asks of it.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Node holds the files (file list, stats) and the plugin's record of
	// them (Node.Plugin: for Cassandra its host id and segments).
	Node NodeManifest `json:"node"`
}

// logArchiveTimeLayout begins a log archive id: sortable, nanoseconds.
const logArchiveTimeLayout = "20060102T150405.000000000Z"

// LogArchiveID names a node's shipment at t: it sorts by time, and one
// node never ships twice in the same nanosecond.
func LogArchiveID(nodeID string, t time.Time) string {
	return t.UTC().Format(logArchiveTimeLayout) + "-" + nodeID
}

// LogArchiveTime is the time a log archive id begins with (LogArchiveID).
func LogArchiveTime(id string) (time.Time, bool) {
	stamp, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(logArchiveTimeLayout, stamp)
	return t, err == nil
}

func logArchiveKey(id string) string { return logArchivePrefix + id }

func (r *Repository) logArchiveHeader() []byte { return header.New(logArchiveMagic, r.cfg.Encrypted()) }

// ValidateLogArchive checks a log archive record (hostile input when read).
func ValidateLogArchive(a *LogArchive) error {
	switch {
	case a == nil:
		return fmt.Errorf("%w: nil log archive", ErrInvalidManifest)
	case a.FormatVersion != LogArchiveFormatVersion:
		return fmt.Errorf("%w: log archive format_version %d, this build reads %d", ErrInvalidManifest, a.FormatVersion, LogArchiveFormatVersion)
	case !ValidBackupID(a.ID):
		return fmt.Errorf("%w: invalid log archive id %q", ErrInvalidManifest, a.ID)
	case a.Plugin == "":
		return fmt.Errorf("%w: log archive %s names no plugin", ErrInvalidManifest, a.ID)
	case a.Node.NodeID == "" || !strings.HasSuffix(a.ID, "-"+a.Node.NodeID):
		return fmt.Errorf("%w: log archive %s: node %q is not the one its id names", ErrInvalidManifest, a.ID, a.Node.NodeID)
	case a.To.Before(a.From):
		return fmt.Errorf("%w: log archive %s: its range ends (%s) before it begins (%s)", ErrInvalidManifest, a.ID, a.To, a.From)
	}
	if err := validateNode(&a.Node); err != nil {
		return fmt.Errorf("%w: log archive %s: %v", ErrInvalidManifest, a.ID, err)
	}
	return nil
}

// PutLogArchiveLocked commits a log archive under lock lockID (refreshed
// first, as PutManifestLocked): its tree blobs must be flushed. A repeat
// with the same content is fine; different content under the same id is
// ErrExists.
func (r *Repository) PutLogArchiveLocked(ctx context.Context, lockID string, a *LogArchive) error {
	c := *a
	c.Node.Files = nil
	if err := ValidateLogArchive(&c); err != nil {
		return fmt.Errorf("put log archive: %w", err)
	}
	if err := r.requireFlushed(ctx, c.Node.Tree); err != nil {
		return fmt.Errorf("put log archive %s: %w", c.ID, err)
	}
	plain, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	if err := r.RefreshLock(ctx, lockID); err != nil {
		return fmt.Errorf("put log archive %s: %w", c.ID, err)
	}
	h := r.logArchiveHeader()
	data := r.snapCi.Seal(h, zenc.EncodeAll(plain, nil), header.AAD(h, logArchiveAADTag, c.ID))
	err = r.be.Put(ctx, logArchiveKey(c.ID), data, true)
	if errors.Is(err, backend.ErrExists) {
		existing, gerr := r.GetLogArchive(ctx, c.ID)
		if gerr != nil {
			return fmt.Errorf("put log archive %s: one exists and cannot be read (%v): %w", c.ID, gerr, ErrExists)
		}
		if b, _ := json.Marshal(existing); !bytes.Equal(b, plain) {
			return fmt.Errorf("put log archive %s: a different one exists: %w", c.ID, ErrExists)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("put log archive %s: %w", c.ID, err)
	}
	return nil
}

// requireFlushed checks every blob of ids is listed by a written index
// segment (looking again once: another process may have written it).
func (r *Repository) requireFlushed(ctx context.Context, ids []ObjectID) error {
	reloaded := false
	for _, id := range ids {
		if !r.flushed(id) && !reloaded {
			if err := r.ReloadIndex(ctx); err != nil {
				return err
			}
			reloaded = true
		}
		if !r.flushed(id) {
			return fmt.Errorf("tree blob %s is not in the repository: %w", id, ErrNotFound)
		}
	}
	return nil
}

// GetLogArchive reads and validates log archive id, without its file
// list (LoadFiles(&a.Node) loads it).
func (r *Repository) GetLogArchive(ctx context.Context, id string) (*LogArchive, error) {
	if !ValidBackupID(id) {
		return nil, fmt.Errorf("log archive %q: invalid id: %w", id, ErrNotFound)
	}
	data, err := r.be.Get(ctx, logArchiveKey(id))
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("log archive %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("log archive %s: %w", id, err)
	}
	plain, err := r.openSealed(data, logArchiveMagic, logArchiveAADTag, id)
	if err != nil {
		return nil, fmt.Errorf("log archive %s: %w", id, err)
	}
	a := new(LogArchive)
	if err := json.Unmarshal(plain, a); err != nil {
		return nil, fmt.Errorf("log archive %s: %w: bad JSON: %v", id, ErrInvalidManifest, err)
	}
	if a.ID != id {
		return nil, fmt.Errorf("log archive %s: %w: names %q", id, ErrInvalidManifest, a.ID)
	}
	if a.Node.Files != nil {
		return nil, fmt.Errorf("log archive %s: %w: carries a file list inline", id, ErrInvalidManifest)
	}
	if err := ValidateLogArchive(a); err != nil {
		return nil, err
	}
	return a, nil
}

// ListLogArchiveIDs returns every log archive id, ascending (by time).
func (r *Repository) ListLogArchiveIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.be.List(ctx, logArchivePrefix, func(oi backend.ObjectInfo) error {
		if id := strings.TrimPrefix(oi.Key, logArchivePrefix); ValidBackupID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list log archives: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// DeleteLogArchive removes a log archive record; its blobs stay until
// garbage collection finds them unreferenced. A missing one is fine.
func (r *Repository) DeleteLogArchive(ctx context.Context, id string) error {
	if !ValidBackupID(id) {
		return fmt.Errorf("delete log archive %q: invalid id: %w", id, ErrNotFound)
	}
	if err := r.be.Delete(ctx, logArchiveKey(id)); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete log archive %s: %w", id, err)
	}
	return nil
}

// logArchiveRefs returns every blob log archive id references.
func (r *Repository) logArchiveRefs(ctx context.Context, id string) ([]ObjectID, error) {
	a, err := r.GetLogArchive(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errSnapshotGone
	}
	if err != nil {
		return nil, fmt.Errorf("log archive %s unreadable: %w", id, err)
	}
	refs := append([]ObjectID(nil), a.Node.Tree...)
	files, err := r.LoadFiles(ctx, &a.Node)
	if err != nil {
		return nil, fmt.Errorf("log archive %s unreadable: %w", id, err)
	}
	for _, f := range files {
		refs = append(refs, f.Chunks...)
	}
	return refs, nil
}

// LogArchivesToDelete is retention's plan for log archives: those whose
// every file closed more than margin before the oldest kept backup of
// their plugin began, which no restore to a time can start early enough
// to need. Archives of a plugin with no kept backup are kept (nothing
// to judge them by; deleting them is never needed for safety). Pure.
func LogArchivesToDelete(archives []LogArchive, kept []Summary, margin time.Duration) []string {
	oldest := map[string]time.Time{}
	for _, b := range kept {
		if t, ok := oldest[b.Plugin]; !ok || b.StartedAt.Before(t) {
			oldest[b.Plugin] = b.StartedAt
		}
	}
	var out []string
	for _, a := range archives {
		if t, ok := oldest[a.Plugin]; ok && a.To.Before(t.Add(-margin)) {
			out = append(out, a.ID)
		}
	}
	sort.Strings(out)
	return out
}
