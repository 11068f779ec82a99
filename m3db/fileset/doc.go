// Package fileset reads an M3DB node's data directory (its filePathPrefix)
// and says, for every fileset in it, whether it is complete and intact —
// the question a consistent M3DB backup must answer before it takes a file.
//
// It owns M3DB's on-disk naming (M3 v1.5.0's persist/fs layout: data
// filesets under data/<ns>/<shard>/, snapshot filesets and snapshot
// metadata under snapshots/, index filesets under index/data/<ns>/ and
// index/snapshots/<ns>/, commit logs under commitlogs/, including the old
// volume-less names) and M3's completeness rule: the checkpoint file exists
// and holds the adler32 of the digest file (little-endian), and every file
// the digest lists has that adler32 — for data and snapshot filesets five
// little-endian uint32s (info, index, summaries, bloomfilter, data), for
// index filesets the IndexDigests protobuf, of which it decodes only the
// few fields it needs with protowire (no generated code: the full M3
// protobuf types belong elsewhere).
//
// It only reads, through an fs.FS, and decides nothing: it must not write,
// link, hash for the repository, upload, or know about etcd, placements,
// the plugin's configuration, the Raft state or the operation engine. The
// M3DB plugin calls Scan and takes the filesets it reports OK, naming the
// others.
package fileset
