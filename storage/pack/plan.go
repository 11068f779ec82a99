package pack

import (
	"cmp"
	"fmt"
	"slices"
)

// Range is one ranged read of a pack covering the records of Entries.
type Range struct {
	Offset  int64
	Length  int64
	Entries []Entry // in offset order
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Offset + r.Length }

// Record returns the sealed record of e from data, the bytes read for r
// (data[0] is at r.Offset). It fails if e is not inside r or data is short.
func (r Range) Record(data []byte, e Entry) ([]byte, error) {
	start := int64(e.Offset) - r.Offset
	if start < 0 || e.End() > r.End() || e.End()-r.Offset > int64(len(data)) {
		return nil, fmt.Errorf("pack: record [%d, %d) not inside the %d bytes read at %d", e.Offset, e.End(), len(data), r.Offset)
	}
	return data[start : start+int64(e.StoredLen)], nil
}

// PlanReads groups the entries of one pack into ranged reads: entries
// whose records are at most maxGap bytes apart share a read, so restoring
// many small neighbouring blobs costs one request instead of many (the
// gap bytes are read and discarded). Entries may come in any order and may
// repeat; the ranges and their entries are in offset order. maxGap < 0 is
// treated as 0 (only touching records are merged).
func PlanReads(entries []Entry, maxGap int64) []Range {
	if len(entries) == 0 {
		return nil
	}
	maxGap = max(maxGap, 0)
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int { return cmp.Compare(a.Offset, b.Offset) })
	var out []Range
	start, end := int64(sorted[0].Offset), sorted[0].End()
	first := 0
	for i := 1; i <= len(sorted); i++ {
		if i < len(sorted) && int64(sorted[i].Offset)-end <= maxGap {
			end = max(end, sorted[i].End())
			continue
		}
		out = append(out, Range{Offset: start, Length: end - start, Entries: sorted[first:i:i]})
		if i < len(sorted) {
			first, start, end = i, int64(sorted[i].Offset), sorted[i].End()
		}
	}
	return out
}
