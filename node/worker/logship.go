package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/storage"
)

// Log shipping (plugin.LogShipper): the node uploads its database's
// closed log files as log archives between backups, so a restore to a
// time reaches up to the last shipped file rather than the last backup.
// Each round ships what it has not shipped before, under a shared lock
// like a backup's upload (docs/gc-safety.md), and remembers what it
// shipped in <data dir>/logship.json. A file shipped twice (that record
// lost) costs one more small archive record, never a second upload of
// its bytes (content-addressed chunks).

// logArchiveStore is what shipping needs of the repository beyond
// Repository.
type logArchiveStore interface {
	Lock(ctx context.Context, id string, kind storage.LockKind, owner string) error
	Unlock(ctx context.Context, id string) error
	PutLogArchiveLocked(ctx context.Context, lockID string, a *storage.LogArchive) error
}

// LogShipStatus is what the node's metrics report of shipping.
type LogShipStatus struct {
	// Enabled: the node's plugin ships logs (as configured; known after
	// the first round).
	Enabled bool
	// OldestPending is when the oldest closed file not yet shipped
	// closed, as of the last round (zero: none was waiting).
	OldestPending time.Time
	// LastSuccess is when the last successful round began: every file
	// closed before then has been shipped.
	LastSuccess  time.Time
	Files, Bytes int64 // shipped since start
	Archives     int64
	Failures     int64 // failed rounds since start
}

type logShipper struct {
	mu     sync.Mutex // one round at a time
	status sync.Mutex
	st     LogShipStatus
}

// shipState is logship.json: the shipped files, path → size.
type shipState struct {
	Shipped map[string]int64 `json:"shipped"`
}

func (w *LocalWorker) shipStatePath() string { return filepath.Join(w.cfg.DataDir, "logship.json") }

// LogShipStatus reports shipping for metrics.
func (w *LocalWorker) LogShipStatus() LogShipStatus {
	w.ship.status.Lock()
	defer w.ship.status.Unlock()
	return w.ship.st
}

func (w *LocalWorker) setShipStatus(fn func(*LogShipStatus)) {
	w.ship.status.Lock()
	defer w.ship.status.Unlock()
	fn(&w.ship.st)
}

// ShipLogs runs one round of log shipping and returns the archive it
// wrote (nil: nothing new to ship, or the plugin ships no logs).
func (w *LocalWorker) ShipLogs(ctx context.Context) (*storage.LogArchive, error) {
	shipper, ok := w.plugins.Own().(plugin.LogShipper)
	if !ok {
		return nil, nil
	}
	w.ship.mu.Lock()
	defer w.ship.mu.Unlock()
	a, err := w.shipLogs(ctx, shipper)
	if err != nil {
		w.setShipStatus(func(s *LogShipStatus) { s.Failures++ })
	}
	return a, err
}

func (w *LocalWorker) shipLogs(ctx context.Context, shipper plugin.LogShipper) (*storage.LogArchive, error) {
	began := time.Now()
	logs, err := shipper.ClosedLogs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list closed logs: %w", err)
	}
	// No root: the plugin keeps no log as configured (Cassandra without
	// cassandra_commitlog_archive).
	w.setShipStatus(func(s *LogShipStatus) { s.Enabled = logs.Root != "" })
	if logs.Root == "" {
		return nil, nil
	}
	state := w.readShipState()
	var pending []plugin.LogFile
	var oldest time.Time
	for _, f := range logs.Files {
		if size, ok := state.Shipped[f.Path]; ok && size == f.Size {
			continue
		}
		pending = append(pending, f)
		if oldest.IsZero() || f.ClosedAt.Before(oldest) {
			oldest = f.ClosedAt
		}
	}
	w.setShipStatus(func(s *LogShipStatus) { s.OldestPending = oldest })
	if len(pending) == 0 {
		w.setShipStatus(func(s *LogShipStatus) { s.LastSuccess = began })
		return nil, w.writeShipState(state, logs.Files, false)
	}
	meta, err := shipper.LogRecord(ctx, pending)
	if err != nil {
		return nil, fmt.Errorf("record of the closed logs: %w", err)
	}
	a, err := w.uploadLogs(ctx, logs.Root, pending, meta)
	if err != nil {
		return nil, err
	}
	var bytes int64
	for _, f := range pending {
		state.Shipped[f.Path] = f.Size
		bytes += f.Size
	}
	w.setShipStatus(func(s *LogShipStatus) {
		s.OldestPending, s.LastSuccess = time.Time{}, began
		s.Files += int64(len(pending))
		s.Bytes += bytes
		s.Archives++
	})
	w.log.Info("shipped closed log files", "archive", a.ID, "files", len(pending), "bytes", bytes, "from", a.From, "to", a.To)
	return a, w.writeShipState(state, logs.Files, true)
}

// uploadLogs stores files (below root) and commits their log archive,
// all under a shared lock.
func (w *LocalWorker) uploadLogs(ctx context.Context, root string, files []plugin.LogFile, meta json.RawMessage) (*storage.LogArchive, error) {
	store, ok := w.repo.(logArchiveStore)
	if !ok {
		return nil, errors.New("this repository handle cannot keep log archives")
	}
	now := time.Now().UTC()
	id := storage.LogArchiveID(w.nodeID, now)
	lockID := "log-" + id
	if err := store.Lock(ctx, lockID, storage.LockShared, w.nodeID); err != nil {
		return nil, err
	}
	defer func() { _ = store.Unlock(context.WithoutCancel(ctx), lockID) }()
	if err := w.repo.SyncIndex(ctx); err != nil {
		return nil, err
	}
	var include []string
	for _, f := range files {
		include = append(include, f.Path)
	}
	snap, err := tree.Snapshot(ctx, root, "", tree.SnapshotOptions{InPlace: true, Include: include, Workers: w.cfg.HashWorkers})
	if err != nil {
		return nil, err
	}
	if got := countFiles(snap.Entries); got != len(files) {
		return nil, fmt.Errorf("%d of the %d closed log files found below %s (%v)", got, len(files), root, snap.Warnings)
	}
	st, err := tree.Upload(ctx, snap.Dir, snap.Entries, w.repo, tree.UploadOptions{Concurrency: w.cfg.UploadConcurrency, Limiter: w.limiter, Throttled: w.io.throttled})
	w.io.uploaded.Add(st.UploadedBytes)
	if err != nil {
		return nil, err
	}
	treeIDs, err := w.repo.SaveFiles(ctx, snap.Entries)
	if err != nil {
		return nil, fmt.Errorf("save file list: %w", err)
	}
	if err := w.repo.Flush(ctx); err != nil {
		return nil, err
	}
	a := &storage.LogArchive{FormatVersion: storage.LogArchiveFormatVersion, ID: id, Plugin: w.plugins.own, CreatedAt: now,
		Node: storage.NodeManifest{NodeID: w.nodeID, Zone: w.cfg.Zone, Stats: snap.Stats, Entries: int64(len(snap.Entries)), Tree: treeIDs, Plugin: meta}}
	for i, f := range files {
		if i == 0 || f.ClosedAt.Before(a.From) {
			a.From = f.ClosedAt.UTC()
		}
		if f.ClosedAt.After(a.To) {
			a.To = f.ClosedAt.UTC()
		}
	}
	if err := store.PutLogArchiveLocked(ctx, lockID, a); err != nil {
		return nil, err
	}
	return a, nil
}

func countFiles(entries []storage.FileEntry) int {
	n := 0
	for _, e := range entries {
		if e.Type == storage.TypeFile {
			n++
		}
	}
	return n
}

func (w *LocalWorker) readShipState() shipState {
	st := shipState{Shipped: map[string]int64{}}
	b, err := os.ReadFile(w.shipStatePath())
	if err == nil && json.Unmarshal(b, &st) != nil {
		w.log.Warn("unreadable log shipping record: the closed log files are shipped again", "file", w.shipStatePath())
	}
	if st.Shipped == nil {
		st.Shipped = map[string]int64{}
	}
	return st
}

// writeShipState keeps only the files the plugin still lists: what it
// dropped cannot come back under the same name and size. Unless shipped
// says the round added some, it writes only when a file was dropped: an
// idle round every interval writes nothing.
func (w *LocalWorker) writeShipState(st shipState, listed []plugin.LogFile, shipped bool) error {
	keep := shipState{Shipped: map[string]int64{}}
	for _, f := range listed {
		if size, ok := st.Shipped[f.Path]; ok {
			keep.Shipped[f.Path] = size
		}
	}
	if !shipped && len(keep.Shipped) == len(st.Shipped) {
		return nil
	}
	b, err := json.Marshal(keep)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(w.shipStatePath(), b)
}
