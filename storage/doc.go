// Package storage owns the repository format of crayfish: where every stored
// thing lives in a bucket (the object key layout), how it is encoded on the
// wire (codec header, zstd compression, JSON schemas), how content is
// addressed and verified (SHA-256 of the plaintext), and the validation of
// manifests, which it treats as hostile input whether they are being written
// or read. docs/repository-format.md describes format v0 byte by byte.
//
// A Repository is opened from a gocloud.dev/blob URL; only the file:// and
// mem:// drivers are linked in for now. Objects are immutable and
// content-addressed, so writing one twice is harmless; a manifest is the
// commit record of a backup and is written at most once.
//
// The package must not know about raft, cluster nodes, operations or HTTP:
// it stores and returns bytes and manifests, and reports failures through
// the sentinel errors in types.go, which callers test with errors.Is.
package storage
