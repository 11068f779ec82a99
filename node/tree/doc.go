// Package tree is the node-side half of the generic "files" plugin: it reads
// and writes a local directory tree safely. It owns three operations:
//
//   - Snapshot lists a live directory (or makes a point-in-time copy of
//     it: hard links, falling back to copies; files the hash cache knows
//     are not linked), lists every entry with its metadata and
//     computes, in one read of each regular file of the copy, the SHA-256
//     of the whole file (FileEntry.Content) and of each of its
//     storage.ChunkSize pieces (FileEntry.Chunks), unless a hash cache
//     knows the file unchanged. It can limit itself to the entries that
//     Include and Exclude patterns select, and can record a tree that is
//     already immutable where it is (InPlace). With SnapshotOptions.Save
//     it also saves every chunk it reads as it reads it (see Read once).
//   - Upload saves the chunks of a snapshot into a BlobStore, skipping
//     chunks the store already holds or that this upload already handled.
//     The unit of work is the chunk, so the workers also share out the
//     chunks of one large file.
//   - Restore makes a target directory hold exactly the entries of a
//     manifest, loading each file's chunks from a BlobSource (a few ahead,
//     concurrently) and verifying them.
//
// # Content format
//
// A regular file of Size bytes has storage.NumChunks(Size) chunks: the
// consecutive ChunkSize (4 MiB) pieces of its content, the last one
// shorter. Each chunk is a blob whose id is its SHA-256. A file of at most
// ChunkSize bytes has exactly one chunk, whose id equals Content; an empty
// file has none and a zero Content. Dirs and symlinks have no chunks.
// Fixed offsets mean a file that grows by appending keeps the ids of its
// unchanged prefix, so a later backup uploads only its last chunks.
//
// # Hash cache
//
// With SnapshotOptions.Cache (package hashcache), a file whose identity
// equals the one recorded when it was last hashed gets its Content and
// Chunks from the cache and is not opened at all, nor linked (see
// Unchanged files are not linked), so a snapshot of an unchanged tree
// costs an lstat and a cache lookup per file. The identity is the
// device, inode, size, mtime (ns), ctime (ns) and file type, keyed by the
// file's absolute live path (so several roots can share a cache).
//
// A linked file is compared without its ctime. link(2) and unlink(2)
// change the ctime of the inode, because its link count changes (measured
// on ext4 here by TestHardLinkChangesCTime: +15 ms after link, +24 ms after
// unlink), so every snapshot, and every release of one, would give each
// file a new ctime and the cache would never hit; taking the identity
// before linking does not help, as the previous release's unlink changed it
// already. The identity of a linked file is therefore compared on device,
// inode, size, mtime and type only: looked up from the lstat of the live
// file just before it would be linked, and stored from the fstat of the
// link it was read through. A file rewritten in place changes its mtime (every
// write(2) and truncate(2) sets it); what goes unseen is content changed
// with the size kept and the mtime set back (touch -d, utimensat(2),
// rsync --inplace with --times), which only ctime would reveal. A file
// modified in place after it was linked is the known limit below.
// In place (InPlace) and for copied files nothing of ours touches the live
// inode, and the ctime is compared too.
//
// Only reads found consistent (see Consistent reads) are cached, and only
// for files whose mtime was older than racyWindow when the read started:
// a later write must then change the mtime, even with coarse timestamps.
//
// # Unchanged files are not linked
//
// A snapshot links files so that Upload reads them as they were when
// hashed. A file the cache knows (looked up from the walk's lstat of the
// live file, before linking) needs no such copy: its chunks are normally
// in the repository already, so Upload will not read it. Snapshot records
// it from the cache without linking it, and writes the list of such files
// with their full identity (device, inode, size, mtime and ctime: nothing
// of ours links or unlinks them, so the ctime holds still) into the
// snapshot directory, under a name that is not valid UTF-8 and so can
// never be an entry. Linking and later unlinking 100,000 unchanged files
// was most of the time of an unchanged re-run. Changed and new files are
// linked and read as before.
//
// Upload reads a listed file only for a chunk the store lacks (it was
// garbage-collected, or an earlier upload of it failed after its snapshot
// filled the cache). It then opens the live file through an os.Root of the
// live root and reads it only if its identity equals the listed one, and
// checks it again after the read; the chunk must also hash to the recorded
// id, as always. Anything else (the file changed, is gone, or holds other
// content than the cache said, which also drops the cache entry when
// UploadOptions.Cache is set) fails the upload with ErrSourceChanged, which
// is not storage.ErrCorrupt: the next snapshot reads the file. The list is
// checksummed and must be owned by the user running Upload; a damaged one
// fails the upload of a missing chunk.
//
// Without a cache, in place, or on a filesystem that refuses the list's
// name, every file is linked as before.
//
// # Read once
//
// With SnapshotOptions.Save, Snapshot hands every chunk it reads to a
// BlobStore right after hashing it (unless the store holds it), from the
// same buffer, so each new byte is read from disk once and Upload finds
// every chunk present. Files are then not linked either (unless
// SnapshotOptions.Link): they are read from the live tree through
// directory handles opened once per directory, with the checks of
// Consistent reads, and listed with their full identity like the files
// the cache knows (see Unchanged files are not linked), so Upload reads
// one again only for a chunk the store lost meanwhile, and only while the
// file is unchanged. Nothing of ours touches the live inodes, so the hash
// cache compares their ctime too. A chunk saved from a read that turned
// out inconsistent is harmless: content-addressed and unreferenced.
//
// The price is the point in time. Linking all files right after the walk
// keeps a file that the database deletes or replaces during the backup
// readable as it was; read live, such a file is skipped with a warning
// (vanished) if it goes before its turn comes. That is what plain-tree
// tools (restic, borg) do; Link keeps the old behaviour for trees where it
// matters, and the database plugins snapshot through the database (in
// place), where neither applies. Measured on 100,000 small files
// (docs/performance.md): linking and unlinking cost about 3 CPU-seconds,
// and the second read and hash about as much again.
//
// # Consistent reads
//
// A file is read with its identity taken by fstat before and after the
// read. If they differ, the file changed while it was read and the content
// may mix bytes from before and after: it is read again. If the file's
// mtime is within racyWindow (50 ms; 2 s for filesystems without sub-second
// timestamps) of the start of the read, a write in the same timestamp tick
// could have left the mtime unchanged: it is read again once the window
// has passed. After maxReadAttempts (3) reads the last one is recorded and
// Snapshot warns that the file changed while it was read. So every file
// recorded without a warning holds the content the file had at one instant
// during the snapshot, never bytes read at different times. A writer that
// rewrites a file in several writes and pauses between them leaves states
// that are neither the old nor the new version; they are real states of
// the file, and a snapshot may record one, as any point-in-time copy
// would. Two cases escape the check: a single write(2) that stalls (in
// dirty page throttling) for longer than racyWindow after updating the
// mtime, and a content change with mtime set back within one read. In
// link mode Upload re-hashes every chunk it reads, which catches most of
// what changes after the snapshot.
//
// # Selection
//
// SnapshotOptions.Include and Exclude take patterns relative to the root
// with "**" for any number of path elements (see ValidatePatterns). A
// pattern matching a directory selects or excludes everything below it.
// Directories that no Include pattern can lead into, and excluded
// directories, are not walked. The directories leading to included
// entries are recorded too (with their modes and times); those leading
// nowhere are not.
//
// # In place
//
// SnapshotOptions.InPlace records and hashes the files of root directly,
// for trees nothing writes to any more (Cassandra's `nodetool snapshot`
// directories): nothing is linked or copied, and Upload reads from the
// root (SnapshotResult.Dir). Files are opened through an os.Root of the
// tree and without following a symlink in their last component, by
// Snapshot and by Upload, so a tree changed meanwhile cannot make them
// read outside it. Files changed or deleted between Snapshot and Upload
// make Upload fail (storage.ErrCorrupt, or the file's absence).
//
// # Owners
//
// Manifests do not record owners yet. With SnapshotOptions.RecordOwners,
// Snapshot reports the numeric owner of every entry beside it
// (SnapshotResult.Owners), and Restore applies owners through
// RestoreOptions.Owner, with lchown semantics and before the mode (chown
// clears setuid and setgid). Both are meant for agents running as root.
//
// # Durability
//
// Restore never leaves a half-written file under its real name, even if
// the machine crashes: every file is written to a temporary file in its
// directory and renamed into place only once its content is durable. It
// does not fsync each file. Files under 8 MiB (syncAloneSize) are handed
// to a batch once written, verified and given their owner, mode and mtime;
// when a batch holds 1,000 files or 64 MiB (or the files run out), the
// worker that filled it syncs it with one syncfs(2) per filesystem its
// files are on, and only then renames them into place. A crash before the
// syncfs leaves, at worst, torn temporary files under temporary names, and
// the renames of a batch are issued after its data is on disk, so a file
// under its real name is always complete. At the end, after the
// directories' metadata, one more syncfs per filesystem makes the renames
// and directory changes durable. Larger files are fsynced and renamed one
// by one, as the fsync costs little next to writing them; so is every file
// where syncfs(2) is unavailable (other systems) or refused (a seccomp
// filter), and the directories that received renames are then fsynced.
// syncfs also flushes what other programs wrote to the same filesystem;
// the batch bounds keep that to one flush per 1,000 files or 64 MiB.
//
// When a restore fails or is cancelled, the temporary files of batches not
// renamed yet are removed. After a crash they may remain: a resumed
// restore removes them with the other extras (unless KeepExtra), and it
// keeps a file already in place only if its size and SHA-256 match the
// entry, so a torn file is never kept whatever left it there.
//
// The package knows nothing about raft, HTTP, packs or the repository
// layout: it talks to storage through the small BlobStore and BlobSource
// interfaces and only shares the manifest types (storage.FileEntry,
// storage.ObjectID, storage.BlobType).
//
// # Memory
//
// Upload holds at most one ChunkSize buffer per worker (recycled through a
// sync.Pool). Restore holds at most 4 chunks per file being restored (the
// ones being loaded plus the one being written), so at most
// RestoreOptions.Concurrency × 4 × ChunkSize in all. Snapshot streams
// through small buffers.
//
// # Safety
//
// Manifests given to Restore are untrusted. Every entry is validated before
// anything is written: relative clean paths, no "..", no duplicates, no
// entry below a file or symlink, sizes in range, exactly NumChunks(Size)
// non-zero chunk ids per file, and the only chunk of a small file equal to
// its content. Upload applies the same validation, so it never reads
// outside the snapshot directory, and derives every read offset and length
// from the validated size. Sources are not trusted either: every chunk must
// have its expected length and the whole file its recorded size and SHA-256
// (ErrVerify) before it is renamed into place.
//
// While writing, Restore never follows a symlink inside the target:
// ancestors are checked with os.Lstat and replaced by real directories when
// needed, files are written to a temporary file in their final directory
// and renamed into place, and symlinks are created, never traversed.
// Snapshot never follows a symlink below the root either; it records
// symlinks as data.
//
// # Limits
//
// A hard link shares the inode of the live file. If the live file is
// modified in place after Snapshot linked it, the snapshot copy changes too:
// the recorded hashes may no longer match and Upload then fails with
// storage.ErrCorrupt naming the file and chunk (it re-hashes every chunk
// it reads, and the store verifies it again) instead of storing
// inconsistent data. Chunks uploaded before the change was noticed are
// intact and harmless. That is fine for databases that write new files and
// rename or delete old ones (an LSM tree, a WAL segment directory), which is
// what this plugin targets; trees whose files are rewritten in place need the
// database to be quiesced during the backup.
//
// Files or directories that vanish between being listed and being linked
// (or read, in place) are skipped with a warning, as are special files
// (sockets, FIFOs, devices) and names that are not valid UTF-8 (the
// manifest is JSON, which cannot carry them faithfully).
//
// The walk of the live tree goes by path. A directory swapped for a
// symlink between being listed and being walked could make Snapshot link
// (or, in place, list) files from outside the root; reading them in place
// or uploading them is refused by the os.Root checks above, and fails the
// operation with an error naming the file.
//
// The package relies on POSIX semantics (hard links, O_NOFOLLOW, rename over
// an existing file); it is meant for Linux and other Unix systems.
package tree
