// Package pack builds and parses pack files, format v1: the immutable
// objects that hold blobs (file chunks and metadata), each blob compressed
// and sealed on its own so that one can be read with a ranged read and a
// repack can copy sealed records verbatim.
//
// # Format v1 (all integers little-endian)
//
//	Header  16 B  : magic "CFPK" | version u8 = 1 | flags u8 (bit0: encrypted) | reserved [10]byte = 0
//	Records       : one per blob, back to back: Seal(payload, aad) where
//	                payload = codec-encoded plaintext (codec 0 raw, 1 zstd) and
//	                aad = "crayfish/v1/blob" ‖ blobID[32] ‖ type u8 ‖ codec u8    (type 0 data, 1 meta)
//	Footer        : Seal(footerPlain, aad = header[16] ‖ "crayfish/v1/footer")
//	  footerPlain : count u32, then count × 48-byte entries sorted by offset:
//	                blobID[32] | type u8 | codec u8 | reserved u16 = 0 | offset u32 |
//	                storedLen u32 (sealed length) | rawLen u32 (plaintext length)
//	Trailer 16 B  : footerLen u32 (sealed footer length) | blobCount u32 |
//	                crc32c(sealed footer bytes) u32 | magic "KPFC"
//
// Seal is the "data" cipher of package crypto: AES-256-GCM with a random
// nonce, sealed = nonce[12] ‖ ciphertext ‖ tag[16] (28 bytes of overhead).
// In an unencrypted repository (flags bit0 = 0, crypto.NoEncryption) Seal
// is the identity: records are the payloads themselves and the footer is
// footerPlain; only the SHA-256 check of each plaintext and the crc32c of
// the footer then protect the data.
//
// blobID is the SHA-256 of the blob's plaintext. The zstd payload is one
// frame written by SpeedFastest without checksum; a blob is stored raw
// when zstd does not shrink it below 97% of its size, and always when it is
// empty. The pack's object name is the SHA-256 of all its bytes (chosen by
// the caller).
//
// # Invariants a reader checks (ReadFooter, OpenBlob)
//
//   - header: magic, version 1, only flag bit0, whose value must match the
//     cipher (an encrypted repository never accepts a plaintext pack or
//     the reverse), reserved bytes zero;
//   - trailer: magic, footerLen = overhead + 4 + 48·count, crc32c;
//   - footer: authenticates, its count equals the trailer's;
//   - entries: known type and codec, reserved zero, sorted by offset and
//     non-overlapping, each record inside [16, packSize − 16 − footerLen),
//     rawLen ≤ MaxBlobSize, storedLen ≥ overhead; raw records hold exactly
//     rawLen bytes and zstd records a non-empty payload of at most rawLen
//     bytes (the writer never stores a larger one). These last two
//     length rules are checks this package adds to the format text;
//   - blob: authenticates under its AAD (so records cannot be swapped or
//     relabelled), rawLen is checked before decoding, zstd output is capped
//     at rawLen (decoder memory limit 64 MiB), and the plaintext must be
//     rawLen bytes that hash to blobID.
//
// Every failure wraps ErrCorrupt (and crypto.ErrAuth when authentication
// failed).
//
// # Reading
//
// Read the last min(packSize, TailReadSize) bytes; ParseTrailer gives
// footerLen, and if FooterReadSize(footerLen) is larger, read that many
// bytes instead. A v1 header is fully determined by the encryption flag, so
// ReadFooter accepts a nil header and assumes Header(c.Encrypted()). To
// restore several blobs of one pack, PlanReads groups neighbouring records
// into single ranged reads.
//
// # Sizes
//
// TargetSize (12 MiB) is the soft size at which callers close a pack;
// MaxSize (16 MiB − 64 KiB) is enforced by Writer.Add, so every pack is one
// PUT under the 16 MiB multipart and chunk thresholds of S3 and GCS.
// MaxBlobSize (8 MiB + 4 KiB) bounds a blob's plaintext.
//
// # Blob ids
//
// Ids are the unnamed type [32]byte (alias ID) rather than
// storage.ObjectID: package storage imports this package, so this package
// cannot import storage. storage.ObjectID values are assignable to and from
// ID without conversion.
//
// # Boundaries
//
// This package only transforms byte slices: it must not perform object
// storage I/O, know the repository layout (object keys, prefixes) or
// maintain the index. Writers are not safe for concurrent use; the read
// functions are. The header and the footer AAD are built by
// storage/internal/header, the one builder of v1 object headers.
package pack
