// Command filesetgen writes real M3DB filesets with M3 v1.5.0's own writers
// (github.com/m3db/m3/src/dbnode/persist/fs) and, on request, damages
// copies of them, so that crayfish's fileset classifier (m3db/fileset) is
// tested against files M3 itself produced. scripts/m3db.sh install builds it
// next to m3dbnode (~/.cache/crayfish/m3db/<version>/filesetgen).
//
//	filesetgen -dir ROOT [-ns NS] [-shard N] [-block UNIXNANOS] [-blocksize 2h]
//	           [-volume V] [-series 50] [-points 12] [-snapshot] [-index]
//	           [-legacy] [-damage all|KIND,...]
//
// ROOT is an M3DB filePathPrefix. Always written: one complete data fileset
// data/NS/N/fileset-BLOCK-V-*.db holding -series series (m3tsz-encoded,
// with tags) of -points datapoints each.
//
//	-snapshot  also a snapshot fileset snapshots/NS/N/fileset-BLOCK-0-*.db
//	           and its snapshot metadata + metadata checkpoint
//	-index     also an index fileset index/data/NS/fileset-BLOCK-V-*.db
//	           (a real FST segment of the same series' tags)
//	-legacy    also a complete data fileset at BLOCK-blocksize in shard N,
//	           renamed to the legacy names without a volume
//	           (fileset-T-<suffix>.db; M3's writer no longer writes them)
//
// -damage writes, for each kind, a fresh copy of the complete fileset (same
// series) somewhere else and then damages it:
//
//	no-checkpoint          data, shard N+1: checkpoint file removed
//	checkpoint-mismatch    data, shard N+2: digest file changed after the
//	                       checkpoint was written
//	data-altered           data, shard N+3: one byte of the data file changed
//	                       after the digest was written
//	missing-data           data, shard N+4: the data file removed
//	index-no-checkpoint    index, block BLOCK-1*blocksize: checkpoint removed
//	index-segment-altered  index, block BLOCK-2*blocksize: one byte of
//	                       segment-0-docdata changed
//
// The index damages need -index. stdout gets a JSON manifest: every fileset
// written, with what a correct classifier must say about it ("expect": ok,
// no-checkpoint, checkpoint-mismatch, digest-mismatch or missing-file, and
// "file", the fileset file concerned, e.g. "data" or "segment-0-docdata").
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/m3db/m3/src/dbnode/digest"
	"github.com/m3db/m3/src/dbnode/encoding"
	"github.com/m3db/m3/src/dbnode/encoding/m3tsz"
	"github.com/m3db/m3/src/dbnode/persist"
	"github.com/m3db/m3/src/dbnode/persist/fs"
	"github.com/m3db/m3/src/dbnode/ts"
	"github.com/m3db/m3/src/m3ninx/doc"
	"github.com/m3db/m3/src/m3ninx/index/segment/builder"
	"github.com/m3db/m3/src/m3ninx/index/segment/fst"
	m3ninxpersist "github.com/m3db/m3/src/m3ninx/persist"
	"github.com/m3db/m3/src/x/checked"
	"github.com/m3db/m3/src/x/ident"
	xtime "github.com/m3db/m3/src/x/time"
	"github.com/pborman/uuid"
)

// Entry is one fileset in the manifest.
type Entry struct {
	Kind       string `json:"kind"` // data, snapshot, snapshot-metadata, index
	Namespace  string `json:"namespace,omitempty"`
	Shard      uint32 `json:"shard"`
	BlockStart int64  `json:"blockStart"`
	Volume     int    `json:"volume"`
	Legacy     bool   `json:"legacy,omitempty"`
	Dir        string `json:"dir"`    // relative to ROOT, slash-separated
	Prefix     string `json:"prefix"` // file name prefix, e.g. fileset-T-V
	Damage     string `json:"damage,omitempty"`
	Expect     string `json:"expect"`
	File       string `json:"file,omitempty"`
	SnapshotID string `json:"snapshotId,omitempty"`
}

// Manifest is what filesetgen prints.
type Manifest struct {
	Root     string  `json:"root"`
	Series   int     `json:"series"`
	Filesets []Entry `json:"filesets"`
}

type gen struct {
	root      string
	ns        string
	blockSize time.Duration
	series    int
	points    int
	random    bool // random values (what m3tsz cannot compress) instead of a ramp
	opts      fs.Options
	manifest  Manifest
}

var dataDamages = []struct{ kind, expect, file string }{
	{"no-checkpoint", "no-checkpoint", "checkpoint"},
	{"checkpoint-mismatch", "checkpoint-mismatch", "digest"},
	{"data-altered", "digest-mismatch", "data"},
	{"missing-data", "missing-file", "data"},
}

var indexDamages = []struct{ kind, expect, file string }{
	{"index-no-checkpoint", "no-checkpoint", "checkpoint"},
	{"index-segment-altered", "digest-mismatch", "segment-0-docdata"},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "filesetgen:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dir       = flag.String("dir", "", "M3DB filePathPrefix to write into (required)")
		ns        = flag.String("ns", "default", "namespace")
		shard     = flag.Uint("shard", 0, "shard")
		blockSize = flag.Duration("blocksize", 2*time.Hour, "block size")
		block     = flag.Int64("block", 0, "block start, unix nanoseconds (default: two blocks before now, truncated)")
		volume    = flag.Int("volume", 0, "volume index of the data and index filesets")
		series    = flag.Int("series", 50, "series per fileset")
		points    = flag.Int("points", 12, "datapoints per series")
		snapshot  = flag.Bool("snapshot", false, "also write a snapshot fileset and its snapshot metadata")
		index     = flag.Bool("index", false, "also write an index fileset")
		legacy    = flag.Bool("legacy", false, "also write a data fileset with legacy (volume-less) names")
		damage    = flag.String("damage", "", "comma-separated damages, or all")
		random    = flag.Bool("random", false, "random values (seeded by shard, block and series: reproducible), which m3tsz cannot compress, for benchmarks")
	)
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		flag.Usage()
		return errors.New("-dir is required; no arguments")
	}
	if *series < 1 || *points < 1 {
		return errors.New("-series and -points must be at least 1")
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	start := xtime.UnixNano(*block)
	if *block == 0 {
		start = xtime.ToUnixNano(time.Now().Truncate(*blockSize).Add(-2 * *blockSize))
	}
	damages, err := parseDamages(*damage, *index)
	if err != nil {
		return err
	}
	g := &gen{
		random: *random,
		root:   root, ns: *ns, blockSize: *blockSize, series: *series, points: *points,
		opts:     fs.NewOptions().SetFilePathPrefix(root),
		manifest: Manifest{Root: root, Series: *series},
	}
	sh := uint32(*shard)

	if _, err := g.writeData(sh, start, *volume, persist.FileSetFlushType, nil); err != nil {
		return err
	}
	if *snapshot {
		if err := g.writeSnapshot(sh, start); err != nil {
			return err
		}
	}
	if *index {
		if _, err := g.writeIndex(sh, start, *volume); err != nil {
			return err
		}
	}
	if *legacy {
		if err := g.writeLegacy(sh, start.Add(-*blockSize)); err != nil {
			return err
		}
	}
	for i, d := range dataDamages {
		if !damages[d.kind] {
			continue
		}
		e, err := g.writeData(sh+uint32(i)+1, start, *volume, persist.FileSetFlushType, nil)
		if err != nil {
			return err
		}
		if err := g.damage(e, d.kind, d.expect, d.file); err != nil {
			return err
		}
	}
	for i, d := range indexDamages {
		if !damages[d.kind] {
			continue
		}
		e, err := g.writeIndex(sh, start.Add(-time.Duration(i+1)**blockSize), *volume)
		if err != nil {
			return err
		}
		if err := g.damage(e, d.kind, d.expect, d.file); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(g.manifest)
}

func parseDamages(s string, index bool) (map[string]bool, error) {
	out := map[string]bool{}
	if s == "" {
		return out, nil
	}
	known := map[string]bool{}
	for _, d := range dataDamages {
		known[d.kind] = true
	}
	for _, d := range indexDamages {
		known[d.kind] = index || s == "all"
	}
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "all" {
			for name, ok := range known {
				out[name] = ok
			}
			continue
		}
		ok, found := known[k]
		if !found {
			return nil, fmt.Errorf("unknown damage %q", k)
		}
		if !ok {
			return nil, fmt.Errorf("damage %q needs -index", k)
		}
		out[k] = true
	}
	if !index {
		for _, d := range indexDamages {
			delete(out, d.kind)
		}
	}
	return out, nil
}

// seriesID and seriesTags name series i the same way in every fileset.
func seriesID(i int) string { return fmt.Sprintf("filesetgen.series-%04d", i) }

func seriesTags(i int) ident.Tags {
	return ident.NewTags(
		ident.StringTag("__name__", "filesetgen_series"),
		ident.StringTag("city", []string{"oslo", "lima", "pune", "kyiv"}[i%4]),
		ident.StringTag("n", fmt.Sprintf("%04d", i)),
	)
}

// encodeSeries returns series i's datapoints in [start, start+blockSize),
// m3tsz-encoded the way M3 flushes them (a segment's head then its tail),
// and their adler32 as M3 computes a segment's checksum.
func (g *gen) encodeSeries(shard uint32, i int, start xtime.UnixNano) (checked.Bytes, uint32, error) {
	enc := m3tsz.NewEncoder(start, nil, true, encoding.NewOptions())
	step := g.blockSize / time.Duration(g.points+1)
	rnd := rand.New(rand.NewPCG(uint64(start), uint64(shard)<<32|uint64(i)))
	for p := 0; p < g.points; p++ {
		dp := ts.Datapoint{
			TimestampNanos: start.Add(time.Duration(p+1) * step).Truncate(time.Second),
			Value:          float64(i*1000 + p),
		}
		if g.random {
			dp.Value = rnd.Float64() * 1e6
		}
		if err := enc.Encode(dp, xtime.Second, nil); err != nil {
			return nil, 0, fmt.Errorf("encoding series %d: %w", i, err)
		}
	}
	seg := enc.Discard()
	var raw []byte
	for _, b := range []checked.Bytes{seg.Head, seg.Tail} {
		if b == nil {
			continue
		}
		b.IncRef()
		raw = append(raw, b.Bytes()...)
		b.DecRef()
	}
	out := checked.NewBytes(raw, nil)
	out.IncRef()
	return out, digest.Checksum(raw), nil
}

// writeData writes one data (flush) or snapshot fileset with M3's writer.
func (g *gen) writeData(shard uint32, start xtime.UnixNano, volume int,
	typ persist.FileSetType, snapshotID uuid.UUID,
) (Entry, error) {
	w, err := fs.NewWriter(g.opts)
	if err != nil {
		return Entry{}, err
	}
	open := fs.DataWriterOpenOptions{
		FileSetType: typ,
		Identifier: fs.FileSetFileIdentifier{
			Namespace:   ident.StringID(g.ns),
			Shard:       shard,
			BlockStart:  start,
			VolumeIndex: volume,
		},
		BlockSize: g.blockSize,
	}
	kind, dir := "data", fs.ShardDataDirPath(g.root, ident.StringID(g.ns), shard)
	if typ == persist.FileSetSnapshotType {
		kind, dir = "snapshot", fs.ShardSnapshotsDirPath(g.root, ident.StringID(g.ns), shard)
		open.Snapshot = fs.DataWriterSnapshotOptions{
			SnapshotTime: start.Add(g.blockSize / 2),
			SnapshotID:   snapshotID,
		}
	}
	if err := w.Open(open); err != nil {
		return Entry{}, fmt.Errorf("opening %s fileset: %w", kind, err)
	}
	for i := 0; i < g.series; i++ {
		data, sum, err := g.encodeSeries(shard, i, start)
		if err != nil {
			return Entry{}, err
		}
		md := persist.NewMetadataFromIDAndTags(ident.StringID(seriesID(i)), seriesTags(i),
			persist.MetadataOptions{})
		if err := w.Write(md, data, sum); err != nil {
			return Entry{}, fmt.Errorf("writing series %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return Entry{}, fmt.Errorf("closing %s fileset: %w", kind, err)
	}
	e := g.entry(kind, shard, start, volume, dir)
	g.manifest.Filesets = append(g.manifest.Filesets, e)
	return e, nil
}

func (g *gen) entry(kind string, shard uint32, start xtime.UnixNano, volume int, dir string) Entry {
	rel, err := filepath.Rel(g.root, dir)
	if err != nil {
		rel = dir
	}
	return Entry{
		Kind: kind, Namespace: g.ns, Shard: shard, BlockStart: int64(start), Volume: volume,
		Dir:    filepath.ToSlash(rel),
		Prefix: fmt.Sprintf("fileset-%d-%d", int64(start), volume),
		Expect: "ok",
	}
}

// writeSnapshot writes a snapshot fileset (volume 0) and the snapshot
// metadata file with its checkpoint, as a node's snapshot process does.
func (g *gen) writeSnapshot(shard uint32, start xtime.UnixNano) error {
	id := uuid.NewRandom()
	if _, err := g.writeData(shard, start, 0, persist.FileSetSnapshotType, id); err != nil {
		return err
	}
	g.manifest.Filesets[len(g.manifest.Filesets)-1].SnapshotID = id.String()
	mw := fs.NewSnapshotMetadataWriter(g.opts)
	err := mw.Write(fs.SnapshotMetadataWriteArgs{
		ID: fs.SnapshotMetadataIdentifier{Index: 0, UUID: id},
		CommitlogIdentifier: persist.CommitLogFile{
			FilePath: fs.CommitLogFilePath(g.root, 0),
			Index:    0,
		},
	})
	if err != nil {
		return fmt.Errorf("writing snapshot metadata: %w", err)
	}
	g.manifest.Filesets = append(g.manifest.Filesets, Entry{
		Kind: "snapshot-metadata", Dir: "snapshots",
		Prefix:     "snapshot-" + strings.ReplaceAll(id.String(), "-", "") + "-0",
		SnapshotID: id.String(), Expect: "ok",
	})
	return nil
}

// writeIndex writes an index fileset holding one real FST segment built
// from the series' ids and tags.
func (g *gen) writeIndex(shard uint32, start xtime.UnixNano, volume int) (Entry, error) {
	b, err := builder.NewBuilderFromDocuments(builder.NewOptions())
	if err != nil {
		return Entry{}, err
	}
	defer b.Close()
	for i := 0; i < g.series; i++ {
		md := doc.Metadata{ID: []byte(seriesID(i))}
		it := ident.NewTagsIterator(seriesTags(i))
		for it.Next() {
			t := it.Current()
			md.Fields = append(md.Fields, doc.Field{
				Name:  append([]byte(nil), t.Name.Bytes()...),
				Value: append([]byte(nil), t.Value.Bytes()...),
			})
		}
		if _, err := b.Insert(md); err != nil {
			return Entry{}, fmt.Errorf("indexing series %d: %w", i, err)
		}
	}
	sw, err := m3ninxpersist.NewMutableSegmentFileSetWriter(fst.WriterOptions{})
	if err != nil {
		return Entry{}, err
	}
	if err := sw.Reset(b); err != nil {
		return Entry{}, fmt.Errorf("building FST segment: %w", err)
	}
	w, err := fs.NewIndexWriter(g.opts)
	if err != nil {
		return Entry{}, err
	}
	err = w.Open(fs.IndexWriterOpenOptions{
		Identifier: fs.FileSetFileIdentifier{
			FileSetContentType: persist.FileSetIndexContentType,
			Namespace:          ident.StringID(g.ns),
			BlockStart:         start,
			VolumeIndex:        volume,
		},
		BlockSize:   g.blockSize,
		FileSetType: persist.FileSetFlushType,
		Shards:      map[uint32]struct{}{shard: {}},
	})
	if err != nil {
		return Entry{}, fmt.Errorf("opening index fileset: %w", err)
	}
	if err := w.WriteSegmentFileSet(sw); err != nil {
		return Entry{}, fmt.Errorf("writing index segment: %w", err)
	}
	if err := w.Close(); err != nil {
		return Entry{}, fmt.Errorf("closing index fileset: %w", err)
	}
	e := g.entry("index", 0, start, volume, fs.NamespaceIndexDataDirPath(g.root, ident.StringID(g.ns)))
	g.manifest.Filesets = append(g.manifest.Filesets, e)
	return e, nil
}

// writeLegacy writes a complete data fileset (volume 0) and renames its
// files to the volume-less names of M3 before volumes existed.
func (g *gen) writeLegacy(shard uint32, start xtime.UnixNano) error {
	e, err := g.writeData(shard, start, 0, persist.FileSetFlushType, nil)
	if err != nil {
		return err
	}
	dir := filepath.Join(g.root, filepath.FromSlash(e.Dir))
	legacyPrefix := fmt.Sprintf("fileset-%d", e.BlockStart)
	for _, suffix := range []string{"info", "index", "summaries", "bloomfilter", "data", "digest", "checkpoint"} {
		from := filepath.Join(dir, e.Prefix+"-"+suffix+".db")
		to := filepath.Join(dir, legacyPrefix+"-"+suffix+".db")
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	last := &g.manifest.Filesets[len(g.manifest.Filesets)-1]
	last.Legacy = true
	last.Prefix = legacyPrefix
	return nil
}

// damage changes a written fileset as named and records the expectation.
func (g *gen) damage(e Entry, kind, expect, file string) error {
	path := filepath.Join(g.root, filepath.FromSlash(e.Dir), e.Prefix+"-"+file+".db")
	var err error
	switch kind {
	case "no-checkpoint", "index-no-checkpoint", "missing-data":
		err = os.Remove(path)
	default: // change one byte: the last one, so lengths stay the same
		err = flipLastByte(path)
	}
	if err != nil {
		return fmt.Errorf("damage %s: %w", kind, err)
	}
	for i := range g.manifest.Filesets {
		f := &g.manifest.Filesets[i]
		if f.Kind == e.Kind && f.Dir == e.Dir && f.Prefix == e.Prefix {
			f.Damage, f.Expect = kind, expect
			if expect != "no-checkpoint" && expect != "checkpoint-mismatch" {
				f.File = file
			}
		}
	}
	return nil
}

func flipLastByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	b[len(b)-1] ^= 0xff
	return os.WriteFile(path, b, 0o644)
}
