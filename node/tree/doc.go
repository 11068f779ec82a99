// Package tree is the node-side half of the generic "files" plugin: it reads
// and writes a local directory tree safely. It owns three operations:
//
//   - Snapshot makes a point-in-time copy of a live directory (hard links,
//     falling back to copies), lists every entry with its metadata and
//     computes, in one read of each regular file of the copy, the SHA-256
//     of the whole file (FileEntry.Content) and of each of its
//     storage.ChunkSize pieces (FileEntry.Chunks).
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
// Files or directories that vanish between being listed and being linked are
// skipped with a warning, as are special files (sockets, FIFOs, devices) and
// names that are not valid UTF-8 (the manifest is JSON, which cannot carry
// them faithfully).
//
// The package relies on POSIX semantics (hard links, O_NOFOLLOW, rename over
// an existing file); it is meant for Linux and other Unix systems.
package tree
