package storage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// TestAdoptOrphanPacks: packs a crashed upload wrote but never indexed
// are adopted by the next session (their blobs count as stored and reach
// an index segment at Flush), while older packs, other prefixes' garbage
// and packs whose footer does not authenticate are left alone.
func TestAdoptOrphanPacks(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	orphan := func(label string, n int) ([]ObjectID, string) {
		var ids []ObjectID
		var contents [][]byte
		for i := range n {
			data := []byte(fmt.Sprintf("%s blob %d %s", label, i, bytes.Repeat([]byte{'x'}, i)))
			ids = append(ids, HashBytes(data))
			contents = append(contents, data)
		}
		return ids, putOrphanPack(t, r, contents...)
	}
	recent, _ := orphan("recent", 3)
	many, _ := orphan("many", 3000) // a footer longer than one tail read
	old, oldKey := orphan("old", 2)
	backdate(t, url, oldKey, 2*time.Hour)
	garbage := HashBytes([]byte("not a pack"))
	if err := r.be.Put(ctx, packKey(BlobData, garbage), []byte("not a pack at all, no footer"), false); err != nil {
		t.Fatal(err)
	}
	r.Close()

	r2, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.HasBlob(recent[0]) {
		t.Fatal("an unindexed blob is known before adoption")
	}
	n, err := r2.AdoptOrphanPacks(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("adopted %d packs, want 2 (recent, many)", n)
	}
	for _, id := range append(recent, many...) {
		if !r2.HasBlob(id) {
			t.Fatalf("blob %s not adopted", id)
		}
	}
	if r2.HasBlob(old[0]) {
		t.Fatal("a pack older than since was adopted")
	}
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r2.LoadBlob(ctx, many[2999])
	if err != nil || !bytes.HasPrefix(got, []byte("many blob 2999 ")) {
		t.Fatalf("adopted blob reads %q, %v", got[:min(len(got), 20)], err)
	}
	r3, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if !r3.HasBlob(recent[2]) {
		t.Fatal("adoption did not reach an index segment")
	}
}
