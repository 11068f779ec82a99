// Package index maps blob ids to their location in packs: the in-memory
// Index, and the index segment objects, format v1, that persist it.
//
// # Segment format v1 (all integers little-endian)
//
//	Header 16 B : magic "CFIX" | version u8 = 1 | flags u8 (bit0: encrypted) | reserved [10]byte = 0
//	Body        : Seal(zstd(payload), aad = header[16] ‖ "crayfish/v1/index")
//	payload     : packCount u32 | entryCount u32 | supersedesCount u32
//	              supersedes : supersedesCount × id[32]
//	              packs      : packCount × (packID[32] | packType u8 | pad[3] = 0 | packSize u32)      40 B each
//	              entries    : entryCount × (blobID[32] | packOrd u32 | offset u32 | storedLen u32 |
//	                           rawLen u32 | type u8 | codec u8 | pad u16 = 0)                           52 B each,
//	                           sorted by blobID, unique
//
// Seal is the "index" cipher of package crypto (AES-256-GCM, random nonce,
// 28 bytes of overhead) or, in unencrypted repositories, the identity. zstd
// is one frame at SpeedDefault without checksum. packOrd indexes the pack
// table of the same segment; offset, storedLen, rawLen, type and codec are
// the blob's pack footer entry (see package pack). Supersedes lists the
// object ids of older segments this one replaces (written by garbage
// collection); readers skip superseded segments.
//
// # Validation (DecodeSegment)
//
// Everything in a segment is treated as hostile. Failures wrap ErrCorrupt:
// header magic, version, flags matching the cipher and reserved bytes;
// authentication; the decompressed payload is capped at MaxPayload
// (256 MiB, checked against the frame header before decoding) and its
// length must equal exactly what the three counts imply; pack types known,
// padding zero, pack ids unique, pack sizes within [32, pack.MaxSize];
// entries strictly ascending by id, padding zero, packOrd in range, and
// each entry must pass pack.Entry.Validate (known type and codec, rawLen ≤
// pack.MaxBlobSize, lengths consistent with the codec) and lie inside its
// pack: offset ≥ 16 and offset+storedLen ≤ packSize − 16 − (the smallest
// footer). EncodeSegment runs the same checks before writing.
//
// SegmentsFrom splits an index (one backup session's additions) into
// segments of at most 8 MiB encoded, grouping blobs by pack.
//
// # In memory
//
// Index stores about 60 bytes per blob (BenchmarkMemoryPerEntry): compact
// 52-byte entries in fixed blocks, an open-addressing table of uint32
// slots keyed by a seeded maphash of the whole id (crafted ids cannot
// cause quadratic behaviour), and a pack table holding each pack id once.
// An id added twice keeps its first location.
//
// # Ids
//
// Blob and pack ids are pack.ID, the unnamed type [32]byte, rather than
// storage.ObjectID: package storage imports this package, so this package
// cannot import storage. storage.ObjectID values are assignable to and from
// pack.ID without conversion (slices of them, such as Supersedes, are not).
//
// # Boundaries
//
// This package only transforms byte slices and memory: it must not perform
// object storage I/O or know the repository layout (object keys, which
// segments exist); callers list, read and write the objects. The segment
// header and AAD are built by storage/internal/header, the one builder of
// v1 object headers.
package index
