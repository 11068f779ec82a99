package fileset

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// indexDigests is the part of M3's index digest file (protobuf
// IndexDigests, src/dbnode/generated/proto/index/index.proto) that a
// completeness check needs:
//
//	message IndexDigests      { uint32 infoDigest = 1; repeated SegmentDigest segmentDigests = 2; }
//	message SegmentDigest     { string segmentType = 1; repeated SegmentFileDigest files = 2; }
//	message SegmentFileDigest { string segmentFileType = 1; uint32 digest = 2; }
//
// Segment i's files are named fileset-<t>-<vol>-segment-<i>-<type>.db.
// Unknown fields are skipped.
type indexDigests struct {
	info     uint32
	segments []segmentDigest
}

type segmentDigest struct {
	segmentType string
	files       []segmentFileDigest
}

type segmentFileDigest struct {
	fileType string
	digest   uint32
}

func decodeIndexDigests(b []byte) (indexDigests, error) {
	var d indexDigests
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			d.info = uint32(x)
		case num == 2 && typ == protowire.BytesType:
			s, err := decodeSegmentDigest(v)
			if err != nil {
				return fmt.Errorf("segment digest %d: %w", len(d.segments), err)
			}
			d.segments = append(d.segments, s)
		}
		return nil
	})
	return d, err
}

func decodeSegmentDigest(b []byte) (segmentDigest, error) {
	var s segmentDigest
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			s.segmentType = string(v)
		case num == 2 && typ == protowire.BytesType:
			f, err := decodeSegmentFileDigest(v)
			if err != nil {
				return fmt.Errorf("file digest %d: %w", len(s.files), err)
			}
			s.files = append(s.files, f)
		}
		return nil
	})
	return s, err
}

func decodeSegmentFileDigest(b []byte) (segmentFileDigest, error) {
	var f segmentFileDigest
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			f.fileType = string(v)
		case num == 2 && typ == protowire.VarintType:
			f.digest = uint32(x)
		}
		return nil
	})
	if err == nil && f.fileType == "" {
		err = errors.New("no segment file type")
	}
	return f, err
}

// eachField calls fn for every field of a protobuf message: v holds a
// bytes field's contents, x a varint's value (fixed32/fixed64 too); groups
// are skipped whole.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}
