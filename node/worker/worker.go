package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// Repository is what a node needs of the repository.
type Repository interface {
	tree.BlobStore
	tree.BlobSource
	SyncIndex(ctx context.Context) error
	AdoptOrphanPacks(ctx context.Context, since time.Time) (int, error)
	SaveFiles(ctx context.Context, files []storage.FileEntry) ([]storage.ObjectID, error)
	Flush(ctx context.Context) error
	GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
	GetLogArchive(ctx context.Context, id string) (*storage.LogArchive, error)
	LoadFiles(ctx context.Context, n *storage.NodeManifest) ([]storage.FileEntry, error)
	// PackOf names the pack holding a blob (to report damage).
	PackOf(id storage.ObjectID) (storage.ObjectID, bool)
}

// Config is what the worker needs of the agent's configuration.
type Config struct {
	NodeID  string
	DataDir string
	Zone    string
	// Repository is the repository URL: restores never write into a
	// file:// repository's directory.
	Repository           string
	HashWorkers          int
	UploadConcurrency    int
	DownloadConcurrency  int
	UploadBytesPerSecond int64
	// ReadOnce: snapshots save the chunks they read.
	ReadOnce bool
}

// LocalWorker performs steps on this machine.
type LocalWorker struct {
	// hashes remembers file hashes by identity across snapshots and
	// restarts, so unchanged files are never read again (nil: no cache).
	hashes  *hashcache.Cache
	guard   targetGuard // what restore targets must stay clear of
	nodeID  string
	cfg     Config
	repo    Repository
	fence   *Fence
	limiter *rate.Limiter
	log     *slog.Logger

	// plugins decide what snapshots take and what restores do with the
	// files.
	plugins *PluginSet
	// pluginMu orders a plugin's snapshot and release: the release of a
	// failed operation can arrive while its snapshot job on this node is
	// still running, and must not clear the database snapshot before the
	// database has finished taking it.
	pluginMu sync.Mutex
	// ops makes a release wait for its operation's running snapshot or
	// upload.
	ops opGate

	ship logShipper
	io   ioCounters

	lastMu sync.Mutex
	last   *snapshotRecord // the record the last Snapshot wrote
}

// NewLocalWorker returns the worker for this node. The hash cache lives in
// the data dir; if it cannot be opened the worker hashes everything and
// says why.
func NewLocalWorker(cfg Config, plugins *PluginSet, repo Repository, fence *Fence, log *slog.Logger) *LocalWorker {
	w := &LocalWorker{nodeID: cfg.NodeID, cfg: cfg, plugins: plugins, repo: repo, fence: fence, log: log, guard: newTargetGuard(cfg)}
	cache, warning, err := hashcache.Open(filepath.Join(cfg.DataDir, "hashcache.db"))
	switch {
	case err != nil:
		log.Warn("hash cache unavailable; every file will be read", "err", err)
	case warning != nil:
		log.Warn("hash cache was reset", "reason", warning)
	}
	w.hashes = cache
	if cfg.UploadBytesPerSecond > 0 {
		burst := int(min(cfg.UploadBytesPerSecond, 1<<20))
		w.limiter = rate.NewLimiter(rate.Limit(cfg.UploadBytesPerSecond), burst)
	}
	return w
}

// snapshotRecord is what a finished snapshot leaves on disk beside the
// linked tree; its presence makes the snapshot step idempotent.
type snapshotRecord struct {
	OpID string `json:"op_id"`
	// Dir is where Upload reads the files: the hard-linked copy below the
	// snapshot directory, or the root itself for an in-place snapshot.
	Dir     string              `json:"dir"`
	Entries []storage.FileEntry `json:"entries"`
	Stats   storage.NodeStats   `json:"stats"`
	Result  wire.SnapshotResult `json:"result"`
	// Saved counts the chunks the snapshot saved as it read them (read
	// once); Upload reports them as uploaded.
	Saved tree.UploadStats `json:"saved"`
}

// encode writes the record as the JSON object json.Marshal would make of
// it, but one entry at a time (the JSON of 100,000 entries at once was the
// largest allocation of a backup), with storage's hand-written entry
// encoder (encoding/json's took a sixth of an unchanged re-run's CPU).
func (r *snapshotRecord) encode(w io.Writer) error {
	head := *r
	head.Entries = nil
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	// head ends with "entries":null}; the entries go in its place.
	const tail = `"entries":null`
	i := bytes.Index(b, []byte(tail))
	if i < 0 {
		return errors.New("snapshot record: no entries field")
	}
	buf := append(b[:i:i], `"entries":[`...)
	for k := range r.Entries {
		if k > 0 {
			buf = append(buf, ',')
		}
		if buf, err = r.Entries[k].AppendJSON(buf); err != nil {
			return err
		}
		if len(buf) >= 64<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	buf = append(append(buf, ']'), b[i+len(tail):]...)
	_, err = w.Write(buf)
	return err
}

func (w *LocalWorker) snapshotDir(opID string) string {
	return filepath.Join(w.cfg.DataDir, "snapshots", opID)
}

func (w *LocalWorker) recordPath(opID string) string {
	return filepath.Join(w.snapshotDir(opID), "record.json")
}

func (w *LocalWorker) loadRecord(opID string) (*snapshotRecord, error) {
	// The record just written by Snapshot is kept in memory: decoding the
	// JSON of 100,000 entries again costs a noticeable part of a re-run.
	w.lastMu.Lock()
	last := w.last
	w.lastMu.Unlock()
	if last != nil && last.OpID == opID {
		return last, nil
	}
	b, err := os.ReadFile(w.recordPath(opID))
	if err != nil {
		return nil, err
	}
	var rec snapshotRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("snapshot record of %s: %w", opID, err)
	}
	return &rec, nil
}

func toFSMProgress(p wire.ProgressFunc) tree.ProgressFunc {
	if p == nil {
		return nil
	}
	return func(tp tree.Progress) {
		p(fsm.Progress{FilesDone: tp.FilesDone, FilesTotal: tp.FilesTotal, BytesDone: tp.BytesDone, BytesTotal: tp.BytesTotal})
	}
}

// Snapshot links the root into dataDir/snapshots/<op>/tree and hashes it.
// A repeat after success returns the recorded result without redoing work;
// a repeat after a crash discards the partial snapshot and starts over.
func (w *LocalWorker) Snapshot(ctx context.Context, ref wire.StepRef, sopts wire.SnapshotOptions, progress wire.ProgressFunc) (wire.SnapshotResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.SnapshotResult{}, err
	}
	defer w.ops.lock(ref.OpID)()
	if rec, err := w.loadRecord(ref.OpID); err == nil {
		return rec.Result, nil
	}
	dir := w.snapshotDir(ref.OpID)
	// With read once the snapshot saves the chunks it reads: deduplicate
	// against the repository as it is now (other nodes write to it), and
	// on a repeat after a crash adopt the packs the first attempt uploaded
	// but had not indexed yet. Without it, the upload step does both.
	if w.cfg.ReadOnce {
		if err := w.repo.SyncIndex(ctx); err != nil {
			return wire.SnapshotResult{}, err
		}
		if err := w.adoptInterrupted(ctx, ref.OpID, wire.StepSnapshot); err != nil {
			return wire.SnapshotResult{}, err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return wire.SnapshotResult{}, fmt.Errorf("clear partial snapshot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wire.SnapshotResult{}, err
	}
	if w.cfg.ReadOnce {
		if err := fsutil.WriteFileAtomic(w.uploadMarker(ref.OpID, wire.StepSnapshot), nil); err != nil {
			return wire.SnapshotResult{}, fmt.Errorf("upload marker: %w", err)
		}
	}
	// The plugin says which tree to back up; it may build it in linkDir
	// (hard links to the database's own snapshot, which it never changes).
	linkDir := filepath.Join(dir, "tree")
	w.pluginMu.Lock()
	src, err := w.plugins.Own().Snapshot(ctx, ref.OpID, linkDir)
	w.pluginMu.Unlock()
	if err != nil {
		os.RemoveAll(dir)
		return wire.SnapshotResult{}, err
	}
	opts := tree.SnapshotOptions{
		Workers: w.snapshotWorkers(), Progress: toFSMProgress(progress), Cache: w.hashes,
		RecordOwners: os.Geteuid() == 0,
		Include:      src.Include, Exclude: src.Exclude, InPlace: src.InPlace, Link: src.Link,
	}
	if w.cfg.ReadOnce {
		// Read once: the chunks are saved as the snapshot reads them.
		opts.Save = &tree.SaveOptions{Store: w.repo, Limiter: w.limiter, Throttled: w.io.throttled}
	}
	if opts.Save != nil && sopts.Shared {
		// Larger files wait for the upload step, where the dedup step gives
		// the chunks nodes share to one of them.
		opts.Save.MaxFileSize = sharedSaveMax
	}
	root, meta := src.Root, src.Meta
	if opts.InPlace {
		linkDir = ""
	}
	res, err := tree.Snapshot(ctx, root, linkDir, opts)
	if err != nil {
		os.RemoveAll(dir)
		if errors.Is(err, tree.ErrRootMissing) {
			return wire.SnapshotResult{}, wire.Permanent(err)
		}
		return wire.SnapshotResult{}, err
	}
	// The chunks saved are part of the repository only once flushed; the
	// record that says the snapshot is done must not come first.
	if opts.Save != nil {
		if err := w.repo.Flush(ctx); err != nil {
			os.RemoveAll(dir)
			return wire.SnapshotResult{}, err
		}
	}
	w.io.uploaded.Add(res.Saved.UploadedBytes)
	w.io.hits.Add(res.Hash.CacheHits)
	w.io.misses.Add(res.Hash.FilesRead)
	w.io.read.Add(res.Hash.BytesRead)
	for i, o := range res.Owners {
		uid, gid := o.UID, o.GID
		res.Entries[i].UID, res.Entries[i].GID = &uid, &gid
	}
	rec := snapshotRecord{OpID: ref.OpID, Dir: res.Dir, Entries: res.Entries, Stats: res.Stats, Saved: res.Saved, Result: wire.SnapshotResult{
		Files: res.Stats.Files, Dirs: res.Stats.Dirs, Symlinks: res.Stats.Symlinks, Bytes: res.Stats.Bytes, Warnings: append(src.Warnings, res.Warnings...),
		Zone: w.cfg.Zone, Plugin: meta,
	}}
	if err := fsutil.WriteAtomic(w.recordPath(ref.OpID), 0o600, rec.encode); err != nil {
		return wire.SnapshotResult{}, fmt.Errorf("write snapshot record: %w", err)
	}
	w.lastMu.Lock()
	w.last = &rec
	w.lastMu.Unlock()
	w.log.Info("snapshot taken", "op", ref.OpID, "files", rec.Result.Files, "bytes", rec.Result.Bytes)
	return rec.Result, nil
}

// Upload saves every chunk of the snapshot that the repository lacks, then
// the node's file list, and flushes packs and an index segment. Blobs are
// content-addressed, so a repeat saves only what is missing.
func (w *LocalWorker) Upload(ctx context.Context, ref wire.StepRef, skip []storage.ObjectID, progress wire.ProgressFunc) (wire.UploadResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.UploadResult{}, err
	}
	defer w.ops.lock(ref.OpID)()
	rec, err := w.loadRecord(ref.OpID)
	if err != nil {
		return wire.UploadResult{}, wire.Permanent(fmt.Errorf("no snapshot of operation %s on node %s: %w", ref.OpID, w.nodeID, err))
	}
	// Other nodes (or an earlier life of this one) may have stored blobs
	// since the index was loaded, and a garbage collection may have removed
	// some: deduplicate against the repository as it is now, under the
	// operation's lock (docs/gc-safety.md).
	if err := w.repo.SyncIndex(ctx); err != nil {
		return wire.UploadResult{}, err
	}
	// A repeat after a crash adopts the packs the first attempt uploaded
	// but had not indexed yet, instead of uploading their blobs again. The
	// margin covers clock skew between this node and the storage.
	if err := w.adoptInterrupted(ctx, ref.OpID, wire.StepUpload); err != nil {
		return wire.UploadResult{}, err
	}
	if _, err := os.Stat(w.uploadMarker(ref.OpID, wire.StepUpload)); err != nil {
		if err := fsutil.WriteFileAtomic(w.uploadMarker(ref.OpID, wire.StepUpload), nil); err != nil {
			return wire.UploadResult{}, fmt.Errorf("upload marker: %w", err)
		}
	}
	if rec.Dir == "" { // a record written before Dir existed
		rec.Dir = filepath.Join(w.snapshotDir(ref.OpID), "tree")
	}
	var store tree.BlobStore = w.repo
	if len(skip) > 0 {
		store = skipStore{BlobStore: w.repo, skip: skipSet(skip)}
	}
	st, err := tree.Upload(ctx, rec.Dir, rec.Entries, store, tree.UploadOptions{
		Concurrency: w.cfg.UploadConcurrency, Limiter: w.limiter, Throttled: w.io.throttled, Progress: toFSMProgress(progress),
		Cache: w.hashes, // a cache entry found wrong is dropped, so the next snapshot reads the file
	})
	w.io.uploaded.Add(st.UploadedBytes)
	res := uploadResult(st, rec.Saved)
	res.Entries = int64(len(rec.Entries))
	if err != nil {
		if errors.Is(err, storage.ErrCorrupt) || errors.Is(err, tree.ErrSourceChanged) {
			// The snapshot copy, or a live file the snapshot did not link
			// because the cache knew it, changed under us: retrying this
			// step cannot help, only a new backup (a new snapshot) can.
			return res, wire.Permanent(err)
		}
		return res, err
	}
	if res.Tree, err = w.repo.SaveFiles(ctx, rec.Entries); err != nil {
		return res, fmt.Errorf("save file list: %w", err)
	}
	if err := w.repo.Flush(ctx); err != nil {
		return res, err
	}
	w.log.Info("upload done", "op", ref.OpID, "uploaded_chunks", res.Uploaded, "present_chunks", res.AlreadyPresent)
	return res, nil
}

// sharedSaveMax is the largest file a snapshot saves as it reads it when
// other nodes take part (wire.SnapshotOptions.Shared): smaller ones are
// most of the link and read costs, and a duplicate of one across nodes
// costs little.
const sharedSaveMax = 1 << 20

// snapshotWorkers is how many files a snapshot reads at once: as set, or
// by default one per core or upload_concurrency, whichever is more, since
// the readers also save what they read and wait on pack uploads.
func (w *LocalWorker) snapshotWorkers() int {
	if w.cfg.HashWorkers > 0 {
		return w.cfg.HashWorkers
	}
	return max(runtime.NumCPU(), w.cfg.UploadConcurrency)
}

// uploadResult counts the chunks the snapshot saved (which Upload then
// found present) as uploaded.
func uploadResult(st, saved tree.UploadStats) wire.UploadResult {
	moved := min(saved.Uploaded, st.AlreadyPresent)
	movedBytes := min(saved.UploadedBytes, st.AlreadyPresentBytes)
	return wire.UploadResult{
		Uploaded: st.Uploaded + moved, UploadedBytes: st.UploadedBytes + movedBytes, StoredBytes: st.StoredBytes + saved.StoredBytes,
		AlreadyPresent: st.AlreadyPresent - moved, AlreadyPresentBytes: st.AlreadyPresentBytes - movedBytes,
	}
}

// uploadMarker is the file whose mtime says when a step of the operation
// (snapshot, with read once, or upload) first saved chunks on this node.
// Only its own repeat adopts orphan packs: adopting on every run would
// list every pack of the repository each time, and take in the packs
// other nodes are still uploading.
func (w *LocalWorker) uploadMarker(opID, step string) string {
	return filepath.Join(w.snapshotDir(opID), step+"-started")
}

// adoptInterrupted adopts the packs an interrupted earlier attempt of the
// operation's step uploaded but did not index, instead of uploading their
// blobs again. The margin covers clock skew between this node and the
// storage.
func (w *LocalWorker) adoptInterrupted(ctx context.Context, opID, step string) error {
	fi, err := os.Stat(w.uploadMarker(opID, step))
	if err != nil {
		return nil
	}
	n, err := w.repo.AdoptOrphanPacks(ctx, fi.ModTime().Add(-10*time.Minute))
	if err != nil {
		return err
	}
	if n > 0 {
		w.log.Info("adopted packs of an interrupted upload", "op", opID, "packs", n)
	}
	return nil
}

// Close releases the hash cache.
func (w *LocalWorker) Close() error {
	if w.hashes == nil {
		return nil
	}
	return w.hashes.Close()
}

// Release removes the operation's snapshot. Releasing twice is fine.
func (w *LocalWorker) Release(ctx context.Context, ref wire.StepRef) error {
	if err := w.fence.Admit(ref); err != nil {
		return err
	}
	defer w.ops.lock(ref.OpID)()
	w.lastMu.Lock()
	if w.last != nil && w.last.OpID == ref.OpID {
		w.last = nil
	}
	w.lastMu.Unlock()
	w.pluginMu.Lock()
	defer w.pluginMu.Unlock()
	if err := w.plugins.Own().Release(ctx, ref.OpID); err != nil {
		return err
	}
	return os.RemoveAll(w.snapshotDir(ref.OpID))
}

// SweepSnapshots removes the snapshots of operations that have finished
// (finished reports it from the FSM): those whose release step could not
// reach this node because it was down when the operation ended.
func (w *LocalWorker) SweepSnapshots(finished func(opID string) bool) (removed int) {
	dirs, err := os.ReadDir(filepath.Join(w.cfg.DataDir, "snapshots"))
	if err != nil {
		return 0
	}
	for _, d := range dirs {
		if d.IsDir() && finished(d.Name()) {
			w.lastMu.Lock()
			if w.last != nil && w.last.OpID == d.Name() {
				w.last = nil
			}
			w.lastMu.Unlock()
			if err := w.plugins.Own().Release(context.Background(), d.Name()); err != nil {
				w.log.Warn("could not release the database snapshot of a finished operation", "op", d.Name(), "err", err)
				continue
			}
			if err := os.RemoveAll(w.snapshotDir(d.Name())); err == nil {
				removed++
				w.log.Info("removed the snapshot of a finished operation", "op", d.Name())
			}
		}
	}
	// A plugin restore's staged downloads, when its cleanup step could
	// not reach this node.
	staged, _ := os.ReadDir(filepath.Join(w.cfg.DataDir, "restore"))
	for _, d := range staged {
		if d.IsDir() && finished(d.Name()) {
			if err := os.RemoveAll(w.stagingDir(d.Name())); err == nil {
				removed++
				w.log.Info("removed the staged restore files of a finished operation", "op", d.Name())
			}
		}
	}
	return removed
}

// restoreManifest reads the manifest of the backup a restore step
// restores, after bringing the index up to date (other nodes' file lists
// and blobs).
func (w *LocalWorker) restoreManifest(ctx context.Context, req wire.RestoreRequest) (*storage.Manifest, error) {
	if err := w.repo.SyncIndex(ctx); err != nil {
		return nil, err
	}
	if req.LogArchive != "" {
		return w.logArchiveManifest(ctx, req.LogArchive)
	}
	m, err := w.repo.GetManifest(ctx, req.BackupID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidManifest) {
			return nil, wire.Permanent(err)
		}
		return nil, err
	}
	return m, nil
}

// logArchiveManifest presents a log archive as a backup of its one node
// (the step's SourceNode), so a restore step downloads from it alike.
func (w *LocalWorker) logArchiveManifest(ctx context.Context, id string) (*storage.Manifest, error) {
	a, err := w.repo.GetLogArchive(ctx, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidManifest) {
			return nil, wire.Permanent(err)
		}
		return nil, err
	}
	return &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: a.ID, Plugin: a.Plugin,
		StartedAt: a.From, FinishedAt: a.To, Nodes: []storage.NodeManifest{a.Node}}, nil
}

// nodeFiles loads the backed-up node whose files this node receives (""
// when the node is cleared) and that node's file list.
func (w *LocalWorker) nodeFiles(ctx context.Context, req wire.RestoreRequest, m *storage.Manifest) (string, []storage.FileEntry, error) {
	if req.Clear {
		return "", nil, nil
	}
	source := req.SourceNode
	if source == "" {
		source = w.nodeID
	}
	part := wire.NodePart(m, source)
	if part == nil {
		return "", nil, wire.Permanent(fmt.Errorf("backup %s has no data for node %s", req.BackupID, source))
	}
	files, err := w.repo.LoadFiles(ctx, part)
	if err != nil {
		if errors.Is(err, storage.ErrInvalidManifest) || errors.Is(err, storage.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
			return "", nil, wire.Permanent(err)
		}
		return "", nil, err
	}
	// The part's own id: a single-node backup answers for any name (a
	// replacement agent under a new id), and the result names whose
	// files these are.
	return part.NodeID, files, nil
}

// restoreError marks the restore failures a retry cannot fix: hostile
// entries, corrupt or missing objects.
func restoreError(err error) error {
	if errors.Is(err, tree.ErrUnsafePath) || errors.Is(err, tree.ErrInvalidEntry) || errors.Is(err, storage.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
		return wire.Permanent(err)
	}
	return err
}
