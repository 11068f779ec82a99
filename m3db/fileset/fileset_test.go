package fileset

import (
	"encoding/binary"
	"hash/adler32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/encoding/protowire"
)

const t0 = int64(1700006400000000000)

// le32 is a little-endian uint32.
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// addData adds a complete data or snapshot fileset to m, built the way M3
// writes one: five files, the digest of their adler32s, the checkpoint of
// the digest's adler32. prefix is e.g. "fileset-T-0".
func addData(m fstest.MapFS, dir, prefix string) {
	var digest []byte
	for _, s := range dataSuffixes {
		content := []byte(s + " of " + dir + "/" + prefix)
		m[dir+"/"+prefix+"-"+s+".db"] = &fstest.MapFile{Data: content}
		digest = append(digest, le32(adler32.Checksum(content))...)
	}
	m[dir+"/"+prefix+"-digest.db"] = &fstest.MapFile{Data: digest}
	m[dir+"/"+prefix+"-checkpoint.db"] = &fstest.MapFile{Data: le32(adler32.Checksum(digest))}
}

// indexDigestsProto encodes an IndexDigests message: info digest, then
// segments of (type, [(fileType, digest)]); an unknown field is added to
// every message to check it is skipped.
func indexDigestsProto(info uint32, segs [][][2]any) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(info))
	for _, seg := range segs {
		var sb []byte
		sb = protowire.AppendTag(sb, 1, protowire.BytesType)
		sb = protowire.AppendString(sb, "fst")
		for _, f := range seg {
			var fb []byte
			fb = protowire.AppendTag(fb, 1, protowire.BytesType)
			fb = protowire.AppendString(fb, f[0].(string))
			fb = protowire.AppendTag(fb, 2, protowire.VarintType)
			fb = protowire.AppendVarint(fb, uint64(f[1].(uint32)))
			fb = protowire.AppendTag(fb, 9, protowire.Fixed32Type)
			fb = protowire.AppendFixed32(fb, 7)
			sb = protowire.AppendTag(sb, 2, protowire.BytesType)
			sb = protowire.AppendBytes(sb, fb)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	b = protowire.AppendTag(b, 15, protowire.BytesType)
	return protowire.AppendString(b, "unknown field")
}

// addIndex adds a complete index fileset with nSegs segments of two files
// each (docdata, postingsdata).
func addIndex(m fstest.MapFS, dir, prefix string, nSegs int) {
	info := []byte("index info of " + prefix)
	m[dir+"/"+prefix+"-info.db"] = &fstest.MapFile{Data: info}
	var segs [][][2]any
	for i := 0; i < nSegs; i++ {
		var files [][2]any
		for _, typ := range []string{"docdata", "postingsdata"} {
			content := []byte(typ + " " + segmentSuffix(i, typ))
			m[dir+"/"+prefix+"-"+segmentSuffix(i, typ)+".db"] = &fstest.MapFile{Data: content}
			files = append(files, [2]any{typ, adler32.Checksum(content)})
		}
		segs = append(segs, files)
	}
	digest := indexDigestsProto(adler32.Checksum(info), segs)
	m[dir+"/"+prefix+"-digest.db"] = &fstest.MapFile{Data: digest}
	m[dir+"/"+prefix+"-checkpoint.db"] = &fstest.MapFile{Data: le32(adler32.Checksum(digest))}
}

// addSnapshotMetadata adds snapshot metadata with its checkpoint.
func addSnapshotMetadata(m fstest.MapFS, id string, index string) {
	meta := []byte("snapshot metadata " + id)
	m["snapshots/snapshot-"+id+"-"+index+"-metadata.db"] = &fstest.MapFile{Data: meta}
	m["snapshots/snapshot-"+id+"-"+index+"-metadata-checkpoint.db"] = &fstest.MapFile{Data: le32(adler32.Checksum(meta))}
}

func flip(m fstest.MapFS, name string) {
	f := m[name]
	d := append([]byte(nil), f.Data...)
	d[len(d)-1] ^= 0xff
	m[name] = &fstest.MapFile{Data: d}
}

// resign rewrites the checkpoint so it matches the (changed) digest file.
func resign(m fstest.MapFS, prefixPath string) {
	m[prefixPath+"-checkpoint.db"] = &fstest.MapFile{Data: le32(adler32.Checksum(m[prefixPath+"-digest.db"].Data))}
}

func scan(t *testing.T, m fstest.MapFS) Report {
	t.Helper()
	r, err := Scan(m)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return r
}

func only(t *testing.T, r Report) Fileset {
	t.Helper()
	if len(r.Filesets) != 1 {
		t.Fatalf("want one fileset, got %d: %+v", len(r.Filesets), r.Filesets)
	}
	return r.Filesets[0]
}

const (
	d0 = "data/metrics/3/fileset-1700006400000000000-0"
	x0 = "index/data/metrics/fileset-1700006400000000000-0"
)

// TestClassify: one fileset per case, built complete and then changed;
// the verdict must name the reason and the file.
func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		build  func(m fstest.MapFS)
		reason Reason // "" for OK
		file   string // the Problem's file
		kind   Kind
	}{
		{"data ok", func(m fstest.MapFS) { addData(m, "data/metrics/3", "fileset-1700006400000000000-0") }, "", "", Data},
		{"data no checkpoint", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			delete(m, d0+"-checkpoint.db")
		}, NoCheckpoint, d0 + "-checkpoint.db", Data},
		{"data digest changed after checkpoint", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			flip(m, d0+"-digest.db")
		}, CheckpointMismatch, d0 + "-checkpoint.db", Data},
		{"data checkpoint of 3 bytes", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			m[d0+"-checkpoint.db"] = &fstest.MapFile{Data: []byte{1, 2, 3}}
		}, CheckpointMismatch, d0 + "-checkpoint.db", Data},
		{"data empty checkpoint", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			m[d0+"-checkpoint.db"] = &fstest.MapFile{}
		}, CheckpointMismatch, d0 + "-checkpoint.db", Data},
		{"data missing digest", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			delete(m, d0+"-digest.db")
		}, MissingFile, d0 + "-digest.db", Data},
		{"data digest of 16 bytes", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			m[d0+"-digest.db"] = &fstest.MapFile{Data: m[d0+"-digest.db"].Data[:16]}
			resign(m, d0)
		}, BadDigest, d0 + "-digest.db", Data},
		{"data missing data file", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			delete(m, d0+"-data.db")
		}, MissingFile, d0 + "-data.db", Data},
		{"data missing info file", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			delete(m, d0+"-info.db")
		}, MissingFile, d0 + "-info.db", Data},
		{"data: first failing file wins", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
			flip(m, d0+"-summaries.db")
			delete(m, d0+"-data.db")
		}, DigestMismatch, d0 + "-summaries.db", Data},
		{"legacy data ok", func(m fstest.MapFS) { addData(m, "data/metrics/3", "fileset-1700006400000000000") }, "", "", Data},
		{"legacy data altered", func(m fstest.MapFS) {
			addData(m, "data/metrics/3", "fileset-1700006400000000000")
			flip(m, "data/metrics/3/fileset-1700006400000000000-bloomfilter.db")
		}, DigestMismatch, "data/metrics/3/fileset-1700006400000000000-bloomfilter.db", Data},
		{"empty data files (bootstrap filesets)", func(m fstest.MapFS) {
			var digest []byte
			for _, s := range dataSuffixes {
				m[d0+"-"+s+".db"] = &fstest.MapFile{}
				digest = append(digest, le32(adler32.Checksum(nil))...)
			}
			m[d0+"-digest.db"] = &fstest.MapFile{Data: digest}
			resign(m, d0)
		}, "", "", Data},
		{"snapshot ok", func(m fstest.MapFS) {
			addData(m, "snapshots/metrics/3", "fileset-1700006400000000000-2")
		}, "", "", Snapshot},
		{"snapshot index file altered", func(m fstest.MapFS) {
			addData(m, "snapshots/metrics/3", "fileset-1700006400000000000-2")
			flip(m, "snapshots/metrics/3/fileset-1700006400000000000-2-index.db")
		}, DigestMismatch, "snapshots/metrics/3/fileset-1700006400000000000-2-index.db", Snapshot},
		{"index ok", func(m fstest.MapFS) { addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 2) }, "", "", Index},
		{"index without segments ok", func(m fstest.MapFS) { addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 0) }, "", "", Index},
		{"index no checkpoint", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 1)
			delete(m, x0+"-checkpoint.db")
		}, NoCheckpoint, x0 + "-checkpoint.db", Index},
		{"index digest changed", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 1)
			flip(m, x0+"-digest.db")
		}, CheckpointMismatch, x0 + "-checkpoint.db", Index},
		{"index info altered", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 1)
			flip(m, x0+"-info.db")
		}, DigestMismatch, x0 + "-info.db", Index},
		{"index second segment altered", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 2)
			flip(m, x0+"-segment-1-postingsdata.db")
		}, DigestMismatch, x0 + "-segment-1-postingsdata.db", Index},
		{"index segment file missing", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 2)
			delete(m, x0+"-segment-0-docdata.db")
		}, MissingFile, x0 + "-segment-0-docdata.db", Index},
		{"index digest not a protobuf", func(m fstest.MapFS) {
			addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 1)
			m[x0+"-digest.db"] = &fstest.MapFile{Data: []byte{0x12, 0x40, 1}} // bytes field longer than the file
			resign(m, x0)
		}, BadDigest, x0 + "-digest.db", Index},
		{"index snapshot ok", func(m fstest.MapFS) {
			addIndex(m, "index/snapshots/metrics", "fileset-1700006400000000000-1", 1)
		}, "", "", IndexSnapshot},
		{"snapshot metadata ok", func(m fstest.MapFS) { addSnapshotMetadata(m, "4751c832b3014e06a55d9d7d202fe320", "0") }, "", "", SnapshotMetadata},
		{"snapshot metadata without checkpoint", func(m fstest.MapFS) {
			addSnapshotMetadata(m, "4751c832b3014e06a55d9d7d202fe320", "0")
			delete(m, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata-checkpoint.db")
		}, NoCheckpoint, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata-checkpoint.db", SnapshotMetadata},
		{"snapshot metadata altered", func(m fstest.MapFS) {
			addSnapshotMetadata(m, "4751c832b3014e06a55d9d7d202fe320", "0")
			flip(m, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata.db")
		}, CheckpointMismatch, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata-checkpoint.db", SnapshotMetadata},
		{"snapshot metadata checkpoint alone", func(m fstest.MapFS) {
			addSnapshotMetadata(m, "4751c832b3014e06a55d9d7d202fe320", "0")
			delete(m, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata.db")
		}, MissingFile, "snapshots/snapshot-4751c832b3014e06a55d9d7d202fe320-0-metadata.db", SnapshotMetadata},
		{"commit log", func(m fstest.MapFS) {
			m["commitlogs/commitlog-0-7.db"] = &fstest.MapFile{Data: []byte("log")}
		}, "", "", CommitLog},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := fstest.MapFS{}
			c.build(m)
			r := scan(t, m)
			f := only(t, r)
			if f.Kind != c.kind {
				t.Errorf("kind %q, want %q", f.Kind, c.kind)
			}
			if c.reason == "" {
				if !f.OK() {
					t.Fatalf("%s: want OK, got %v", f, f.Problem)
				}
			} else {
				if f.OK() {
					t.Fatalf("%s: want %q, got OK", f, c.reason)
				}
				if f.Problem.Reason != c.reason || f.Problem.File != c.file {
					t.Fatalf("%s: got %v, want %s on %s", f, f.Problem, c.reason, c.file)
				}
				if !strings.HasPrefix(f.Problem.Error(), string(c.reason)+": "+c.file) {
					t.Errorf("message %q does not name reason and file", f.Problem.Error())
				}
			}
			// Files are exactly the fileset's present files.
			var want []string
			for name := range m {
				want = append(want, name)
			}
			if !equalSorted(f.Files, want) {
				t.Errorf("files %v, want %v", f.Files, want)
			}
			if len(r.Other) != 0 {
				t.Errorf("other: %v", r.Other)
			}
		})
	}
}

func equalSorted(got, want []string) bool {
	w := append([]string(nil), want...)
	slices.Sort(w)
	return reflect.DeepEqual(got, w) || (len(got) == 0 && len(w) == 0)
}

// TestIdentity: namespace, shard, block start, volume and legacy come from
// the paths; the report is ordered.
func TestIdentity(t *testing.T) {
	m := fstest.MapFS{}
	addData(m, "data/metrics/12", "fileset-1700006400000000000-3")
	addData(m, "data/metrics/12", "fileset-1700006400000000000")
	addData(m, "data/metrics/2", "fileset-1700013600000000000-0")
	addData(m, "data/events/0", "fileset-1699999200000000000-1")
	addData(m, "snapshots/metrics/2", "fileset-1700013600000000000-4")
	addIndex(m, "index/data/metrics", "fileset-1700006400000000000-5", 1)
	addSnapshotMetadata(m, "aaaa", "3")
	m["commitlogs/commitlog-0-10.db"] = &fstest.MapFile{}
	m["commitlogs/commitlog-0-9.db"] = &fstest.MapFile{}
	r := scan(t, m)
	type id struct {
		Kind       Kind
		Namespace  string
		Shard      uint32
		BlockStart int64
		Volume     int
		Legacy     bool
		SnapshotID string
		Files      int
	}
	var got []id
	for _, f := range r.Filesets {
		if !f.OK() {
			t.Errorf("%s: %v", f, f.Problem)
		}
		got = append(got, id{f.Kind, f.Namespace, f.Shard, f.BlockStart, f.Volume, f.Legacy, f.SnapshotID, len(f.Files)})
	}
	want := []id{
		{Data, "events", 0, 1699999200000000000, 1, false, "", 7},
		{Data, "metrics", 2, 1700013600000000000, 0, false, "", 7},
		{Data, "metrics", 12, 1700006400000000000, 0, true, "", 7},
		{Data, "metrics", 12, 1700006400000000000, 3, false, "", 7},
		{Snapshot, "metrics", 2, 1700013600000000000, 4, false, "", 7},
		{SnapshotMetadata, "", 0, 0, 3, false, "aaaa", 2},
		{Index, "metrics", 0, 1700006400000000000, 5, false, "", 5},
		{CommitLog, "", 0, 0, 9, false, "", 1},
		{CommitLog, "", 0, 0, 10, false, "", 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	if s := r.Filesets[2].String(); s != "data metrics/12 block 1700006400000000000 (legacy, no volume)" {
		t.Errorf("String: %q", s)
	}
	if s := r.Filesets[3].String(); s != "data metrics/12 block 1700006400000000000 volume 3" {
		t.Errorf("String: %q", s)
	}
	if len(r.OK()) != len(want) || len(r.Skipped()) != 0 {
		t.Errorf("OK %d, Skipped %d", len(r.OK()), len(r.Skipped()))
	}
}

// TestMixed: a damaged fileset next to intact ones spoils only itself;
// OK and Skipped split the report.
func TestMixed(t *testing.T) {
	m := fstest.MapFS{}
	addData(m, "data/metrics/0", "fileset-1700006400000000000-0")
	addData(m, "data/metrics/0", "fileset-1700006400000000000-1")
	addData(m, "data/metrics/0", "fileset-1700013600000000000-0")
	delete(m, "data/metrics/0/fileset-1700006400000000000-1-checkpoint.db")
	r := scan(t, m)
	if len(r.OK()) != 2 || len(r.Skipped()) != 1 {
		t.Fatalf("OK %v, Skipped %v", r.OK(), r.Skipped())
	}
	s := r.Skipped()[0]
	if s.Volume != 1 || s.Problem.Reason != NoCheckpoint || len(s.Files) != 6 {
		t.Errorf("skipped %s: %v, %d files", s, s.Problem, len(s.Files))
	}
}

// TestOther: files that belong to no fileset are reported, not dropped.
func TestOther(t *testing.T) {
	m := fstest.MapFS{}
	addIndex(m, "index/data/metrics", "fileset-1700006400000000000-0", 1)
	// A leftover segment file the digest does not list.
	m[x0+"-segment-3-docdata.db"] = &fstest.MapFile{Data: []byte("x")}
	extra := []string{
		"data/metrics/notashard/fileset-1-0-data.db",
		"data/metrics/4/fileset-1-0-unknownsuffix.db",
		"data/metrics/4/README",
		"data/stray.db",
		"snapshots/snapshot-abc-metadata.db",
		"index/other/x.db",
		"index/data/metrics/fileset-1700006400000000000-0-summaries.db",
		"commitlogs/commitlog-x.db",
		"lost+found/a/b",
		"toplevel.txt",
	}
	for _, e := range extra {
		m[e] = &fstest.MapFile{Data: []byte("?")}
	}
	r := scan(t, m)
	f := only(t, r)
	if !f.OK() || len(f.Files) != 5 {
		t.Fatalf("%s: %v, files %v", f, f.Problem, f.Files)
	}
	want := append(extra, x0+"-segment-3-docdata.db")
	if !equalSorted(r.Other, want) {
		t.Errorf("other\n%v\nwant\n%v", r.Other, want)
	}
}

func TestEmptyAndMissing(t *testing.T) {
	r := scan(t, fstest.MapFS{})
	if len(r.Filesets) != 0 || len(r.Other) != 0 {
		t.Errorf("empty root: %+v", r)
	}
	if _, err := ScanDir(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("ScanDir of a missing directory: no error")
	}
}

// TestScanDir runs over a real directory (os.DirFS), and a file that
// cannot be read is named Unreadable.
func TestScanDir(t *testing.T) {
	m := fstest.MapFS{}
	addData(m, "data/metrics/3", "fileset-1700006400000000000-0")
	addData(m, "data/metrics/3", "fileset-1700013600000000000-0")
	root := t.TempDir()
	for name, f := range m {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unreadable := filepath.Join(root, "data/metrics/3/fileset-1700013600000000000-0-data.db")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	r, err := ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Filesets) != 2 || !r.Filesets[0].OK() {
		t.Fatalf("%+v", r.Filesets)
	}
	if _, err := os.ReadFile(unreadable); err == nil {
		t.Log("running as root: the chmod 0 file stays readable; Unreadable not checked")
		return
	}
	if p := r.Filesets[1].Problem; p == nil || p.Reason != Unreadable {
		t.Errorf("want Unreadable, got %v", p)
	}
}

func TestParseNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want filesetName
	}{
		{"fileset-1700006400000000000-0-data.db", true, filesetName{t0, 0, false, "data"}},
		{"fileset-1700006400000000000-12-checkpoint.db", true, filesetName{t0, 12, false, "checkpoint"}},
		{"fileset-1700006400000000000-data.db", true, filesetName{t0, 0, true, "data"}},
		{"fileset-1700006400000000000-0-segment-2-fstterms.db", true, filesetName{t0, 0, false, "segment-2-fstterms"}},
		{"fileset-1700006400000000000-segment-2-fstterms.db", true, filesetName{t0, 0, true, "segment-2-fstterms"}},
		{"fileset-1700006400000000000.db", false, filesetName{}},
		{"fileset-x-0-data.db", false, filesetName{}},
		{"fileset-+1-0-data.db", false, filesetName{}},
		{"fileset-1700006400000000000-0-data", false, filesetName{}},
		{"fileset-1700006400000000000-0-.db", false, filesetName{}},
		{"snapshot-1-0-data.db", false, filesetName{}},
	} {
		got, ok := parseFilesetName(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if n, ok := parseSnapshotMetadataName("snapshot-4751c832b3014e06a55d9d7d202fe320-12-metadata-checkpoint.db"); !ok || n.id != "4751c832b3014e06a55d9d7d202fe320" || n.index != 12 || !n.checkpoint {
		t.Errorf("snapshot metadata checkpoint: %+v %v", n, ok)
	}
	for _, bad := range []string{"snapshot-abc-metadata.db", "snapshot--1-metadata.db", "snapshot-abc-x-metadata.db", "snapshot-abc-1-data.db"} {
		if _, ok := parseSnapshotMetadataName(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
	if i, ok := parseCommitLogName("commitlog-0-42.db"); !ok || i != 42 {
		t.Errorf("commitlog: %d %v", i, ok)
	}
	for _, bad := range []string{"commitlog-42.db", "commitlog-0-x.db", "commitlog-0-1.log"} {
		if _, ok := parseCommitLogName(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestDecodeIndexDigests(t *testing.T) {
	b := indexDigestsProto(17, [][][2]any{{{"docdata", uint32(5)}, {"fstterms", uint32(0xffffffff)}}, {}})
	d, err := decodeIndexDigests(b)
	if err != nil {
		t.Fatal(err)
	}
	want := indexDigests{info: 17, segments: []segmentDigest{
		{"fst", []segmentFileDigest{{"docdata", 5}, {"fstterms", 0xffffffff}}},
		{"fst", nil},
	}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v, want %+v", d, want)
	}
	for _, bad := range [][]byte{
		{0x08},                   // tag without its varint
		{0x00, 0x01},             // field number 0
		{0x12, 0x02, 0x12, 0x01}, // segment digest whose file digest is cut short
		protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType),
			protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0x10, 0x01})), // file digest without a type
	} {
		if _, err := decodeIndexDigests(bad); err == nil {
			t.Errorf("% x decoded", bad)
		}
	}
}
