package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math/bits"

	"github.com/crayfish-backup/crayfish/storage"
)

// The cross-node dedup step, partitioned: the coordinator asks every node
// for its chunks of one partition at a time (the ids whose first eight
// bytes fall in the partition's range), decides the partition (which
// holder uploads each missing chunk) and tells every node its part of the
// decision, which the node keeps on its disk for its upload step. The log
// records only a DedupRef per node. So neither the coordinator's memory
// nor any log entry grows with the chunk count of the whole cluster.

// MaxPartitions bounds the partitions of one dedup step.
const MaxPartitions = 1 << 16

// ChunksQuery asks a node about its snapshot's distinct chunks: with
// Partitions 0 only their count and bytes, else the chunks of partition
// Partition of Partitions (ChunkPartition).
type ChunksQuery struct {
	Partitions int `json:"partitions"`
	Partition  int `json:"partition"`
}

// ChunkPartition is the partition of partitions that id falls in: its
// first eight bytes scaled onto [0, partitions), so partitions are
// consecutive ranges of ids and ascending partitions list ids in order.
func ChunkPartition(id storage.ObjectID, partitions int) int {
	hi, _ := bits.Mul64(binary.BigEndian.Uint64(id[:8]), uint64(partitions))
	return int(hi)
}

// ChunkAssignment is the dedup decision for one node and one partition:
// Skip is a bitmap over the node's chunks of the partition in ascending id
// order (ChunksResult.Chunks); bit i (byte i/8, bit i%8) set means another
// node uploads chunk i. Chunks is the length of that list, which the node
// checks against its own. An empty Skip skips nothing.
type ChunkAssignment struct {
	Partitions int    `json:"partitions"`
	Partition  int    `json:"partition"`
	Chunks     int    `json:"chunks"`
	Skip       []byte `json:"skip,omitempty"`
}

// DedupRef is what the log records of one node's skip list: the node keeps
// the list (AssignChunks) and its upload step checks it against Skip and
// Digest before it trusts it. A list that does not match is not used: the
// node then uploads every missing chunk it holds (a duplicate costs space,
// never data).
type DedupRef struct {
	Partitions int   `json:"partitions"`
	Skip       int64 `json:"skip"`
	// Digest is SkipDigest of the skipped ids.
	Digest string `json:"digest"`
}

// SkipDigest hashes a skip list: SHA-256 over the ids in ascending order.
type SkipDigest struct {
	h hash.Hash
	n int64
}

// NewSkipDigest returns an empty digest.
func NewSkipDigest() *SkipDigest { return &SkipDigest{h: sha256.New()} }

// Add adds the next id (ids must come in ascending order).
func (d *SkipDigest) Add(id storage.ObjectID) {
	d.h.Write(id[:])
	d.n++
}

// Ref returns the reference of the ids added so far.
func (d *SkipDigest) Ref(partitions int) DedupRef {
	return DedupRef{Partitions: partitions, Skip: d.n, Digest: hex.EncodeToString(d.h.Sum(nil))}
}

// SetBit sets bit i of bitmap b, growing it as needed.
func SetBit(b []byte, i int) []byte {
	for len(b) <= i/8 {
		b = append(b, 0)
	}
	b[i/8] |= 1 << (i % 8)
	return b
}

// Bit reports bit i of bitmap b.
func Bit(b []byte, i int) bool { return i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 }
