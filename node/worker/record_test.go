package worker

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// The record is streamed entry by entry; it must read back as the record
// json.Marshal would have written, with or without entries.
func TestSnapshotRecordEncodeRoundTrip(t *testing.T) {
	uid := uint32(7)
	full := snapshotRecord{OpID: "op-1", Dir: "/d/\"entries\":null", Stats: storage.NodeStats{Files: 2, Bytes: 5},
		Saved:  tree.UploadStats{Uploaded: 1, UploadedBytes: 3},
		Result: wire.SnapshotResult{Files: 2, Warnings: []string{`"entries":null`}},
		Entries: []storage.FileEntry{
			{Path: "a", Type: storage.TypeDir, Mode: 0o755, MTime: time.Unix(1, 2).UTC()},
			{Path: "a/f", Type: storage.TypeFile, Size: 5, Content: storage.ObjectID{1}, Chunks: []storage.ObjectID{{1}}, UID: &uid},
		}}
	for _, rec := range []snapshotRecord{full, {OpID: "empty", Entries: []storage.FileEntry{}}} {
		var buf bytes.Buffer
		if err := rec.encode(&buf); err != nil {
			t.Fatal(err)
		}
		var got snapshotRecord
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("%v in %s", err, buf.Bytes())
		}
		want, _ := json.Marshal(rec)
		var back snapshotRecord
		json.Unmarshal(want, &back)
		if !reflect.DeepEqual(got, back) {
			t.Errorf("read back %+v, want %+v", got, back)
		}
	}
}
