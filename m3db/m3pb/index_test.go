package m3pb

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"testing"
	"time"
)

// testdata/index is a whole index fileset (metrics namespace, block
// 1796400000000000000, volume 0) that a real m3dbnode v1.5.0 flushed with
// five series in it.
const indexFileset = "index/fileset-1796400000000000000-0-"

func TestRealIndexFileset(t *testing.T) {
	digestRaw := readTestdata(t, indexFileset+"digest.db")
	checkpoint := readTestdata(t, indexFileset+"checkpoint.db")
	if len(checkpoint) != 4 || binary.LittleEndian.Uint32(checkpoint) != adler32.Checksum(digestRaw) {
		t.Fatalf("checkpoint %x is not the adler32 of the digest file (%08x)", checkpoint, adler32.Checksum(digestRaw))
	}
	d, err := UnmarshalIndexDigests(digestRaw)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := Marshal(d); err != nil || !bytes.Equal(out, digestRaw) {
		t.Fatalf("re-encoded digests %x (%v), want M3's %x", out, err, digestRaw)
	}
	noUnknown(t, "digests", d)

	infoRaw := readTestdata(t, indexFileset+"info.db")
	if got := adler32.Checksum(infoRaw); got != d.GetInfoDigest() {
		t.Errorf("info digest %08x, file's adler32 %08x", d.GetInfoDigest(), got)
	}
	info, err := UnmarshalIndexVolumeInfo(infoRaw)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := Marshal(info); err != nil || !bytes.Equal(out, infoRaw) {
		t.Fatalf("re-encoded info %x (%v), want M3's %x", out, err, infoRaw)
	}
	noUnknown(t, "info", info)
	if info.GetBlockStart() != 1796400000000000000 || time.Duration(info.GetBlockSize()) != 30*time.Minute ||
		info.GetFileType() != 0 || len(info.GetShards()) != 16 || info.GetIndexVolumeType().GetValue() != "default" {
		t.Errorf("info: %v", info)
	}

	// Every segment file the digests list is there and matches; the info
	// file lists the same segments and files.
	if len(d.GetSegmentDigests()) != 1 || len(info.GetSegments()) != 1 {
		t.Fatalf("segments: digests %v, info %v", d.GetSegmentDigests(), info.GetSegments())
	}
	seg := d.GetSegmentDigests()[0]
	if seg.GetSegmentType() != "fst" || info.GetSegments()[0].GetSegmentType() != "fst" {
		t.Errorf("segment types %q, %q", seg.GetSegmentType(), info.GetSegments()[0].GetSegmentType())
	}
	types := map[string]bool{}
	for i, f := range seg.GetFiles() {
		b := readTestdata(t, indexFileset+"segment-0-"+f.GetSegmentFileType()+".db")
		if len(b) == 0 {
			t.Errorf("%s is empty: the fileset should hold series", f.GetSegmentFileType())
		}
		if got := adler32.Checksum(b); got != f.GetDigest() {
			t.Errorf("%s: digest %08x, file's adler32 %08x", f.GetSegmentFileType(), f.GetDigest(), got)
		}
		if fi := info.GetSegments()[0].GetFiles(); i >= len(fi) || fi[i].GetSegmentFileType() != f.GetSegmentFileType() {
			t.Errorf("info lists files %v", fi)
		}
		types[f.GetSegmentFileType()] = true
	}
	for _, want := range []string{"docdata", "docidx", "postingsdata", "fstterms", "fstfields"} {
		if !types[want] {
			t.Errorf("no %s in the digests", want)
		}
	}
}
