// Package storage owns the repository, format v1: where every stored thing
// lives in a bucket (config, keys/, data/ and meta/ packs, index/ segments,
// snapshots/, locks/, gc/, damaged/), how blobs are chunked, compressed,
// encrypted, packed, indexed and found again, how a backup is committed
// (its snapshot object), how a node's shipped database log is kept
// between backups (log archives, logs/), and how the repository is maintained safely
// (locks, retention, garbage collection, verify, damage records that keep
// deduplication off damaged copies, and the repairs of index, packs and
// snapshots). Everything read back is treated as hostile
// input. docs/repository-format.md describes the format byte by byte and
// docs/gc-safety.md why garbage collection never deletes what a backup
// needs.
//
// Subpackages own the layers below: backend (the object-store seam over
// gocloud.dev/blob: file, mem, s3, gs, azblob; retries; fault injection),
// crypto (keys and AEAD), pack (the pack file layout) and index (index
// segments and the in-memory index); internal/header builds the headers
// and AADs of every sealed object of format v1.
//
// The package must not know about raft, cluster nodes, operations or HTTP:
// it stores and returns blobs and snapshots and reports failures through
// sentinel errors that callers test with errors.Is.
package storage
