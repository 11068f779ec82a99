// Package backend is the object-store seam under a crayfish repository.
//
// It owns:
//
//   - the drivers: Open turns a URL into a Backend over gocloud.dev/blob
//     (file://, mem://, s3://, gs://, azblob://), with the driver options the
//     repository relies on (no .attrs sidecars and fsync on file://, no
//     content-type sniffing, checksum settings that S3-compatible stores
//     accept, one-request uploads on GCS for pack-sized objects);
//   - atomic puts: an object is visible complete or not at all, and
//     Put(..., ifNotExist=true) is a create-only write that fails with
//     ErrExists when the key is taken;
//   - error classification: ErrNotFound, ErrExists and ErrInvalidKey say
//     what a key is; ErrStalled marks a try cut by one of s3://'s bounded
//     waits (HTTPTimeouts) and ErrUnavailable a call WithRetry gave up on
//     after transient failures; IsTransient says which errors are worth
//     retrying;
//   - retries: WithRetry wraps a Backend with bounded exponential backoff and
//     full jitter, and resolves the "did my lost create-only write land?"
//     case by reading the object back;
//   - a request rate: WithRateLimit makes every request (every try of a
//     retried one, every page of a listing) wait for a limiter first;
//   - fault injection: Faulty wraps a Backend and injects errors, latency,
//     truncated and corrupted reads. It is the seam tests use to prove that a
//     backup either completes despite a misbehaving store or fails clearly.
//
// It must not know anything about what the objects mean: no repository
// format, no key layout beyond "slash-separated keys", no encryption, no
// packs, no indexes, no caching of content. Those live in the layers above,
// which are also responsible for verifying what they read (hashes, lengths):
// a Backend returns the bytes the store gave it.
//
// # Keys
//
// Keys are slash-separated segments of ASCII letters, digits, '.', '_' and
// '-' (at most 1024 bytes). A segment is never empty, "." or "..". Keys whose
// last segment ends in ".tmp" or ".attrs", and keys containing "__0x", are
// reserved: the first two name the file:// driver's temporary and sidecar
// files, the last is the drivers' escape syntax. The same keys are valid on
// every driver, so a repository can be copied between them.
package backend
