// Package tree is the node-side half of the generic "files" plugin: it reads
// and writes a local directory tree safely. It owns three operations:
//
//   - Snapshot makes a point-in-time copy of a live directory (hard links,
//     falling back to copies), lists every entry with its metadata and
//     computes the SHA-256 of every regular file from the copy.
//   - Upload streams the content of a snapshot into an object store,
//     skipping objects the store already holds.
//   - Restore makes a target directory hold exactly the entries of a
//     manifest, fetching content from an object source and verifying it.
//
// The package knows nothing about raft, HTTP or the repository layout: it
// talks to storage through the small ObjectStore and ObjectSource interfaces
// and only shares the manifest types (storage.FileEntry, storage.ObjectID).
//
// # Safety
//
// Manifests given to Restore are untrusted. Every entry is validated before
// anything is written (relative clean paths, no "..", no duplicates, no entry
// below a file or symlink). While writing, Restore never follows a symlink
// inside the target: ancestors are checked with os.Lstat and replaced by real
// directories when needed, files are written to a temporary file in their
// final directory and renamed into place, and symlinks are created, never
// traversed. Snapshot never follows a symlink below the root either; it
// records symlinks as data.
//
// # Limits
//
// A hard link shares the inode of the live file. If the live file is
// modified in place after Snapshot linked it, the snapshot copy changes too:
// the recorded hash may no longer match and Upload then fails with
// storage.ErrCorrupt (the store verifies the hash) instead of storing
// inconsistent data. That is fine for databases that write new files and
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
