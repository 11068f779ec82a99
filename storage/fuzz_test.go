package storage

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeSnapshot feeds arbitrary plaintext to the snapshot decoder: it
// must never panic, and whatever it accepts must be valid.
func FuzzDecodeSnapshot(f *testing.F) {
	m := testManifest("20260102T030405.000001Z-abc")
	for i := range m.Nodes {
		m.Nodes[i].Files = nil
	}
	good, _ := json.Marshal(m)
	f.Add(good, m.BackupID)
	f.Add([]byte(`{"format_version":1,"backup_id":"x","nodes":[{"node_id":"a","entries":-1}]}`), "x")
	f.Add([]byte(`{"format_version":1,"backup_id":"x","nodes":[{"node_id":"a"},{"node_id":"a"}]}`), "x")
	f.Add([]byte(`null`), "x")
	f.Fuzz(func(t *testing.T, plain []byte, id string) {
		got, err := decodeSnapshotJSON(plain, id)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error does not wrap ErrInvalidManifest: %v", err)
			}
			return
		}
		if got.BackupID != id || ValidateManifest(got) != nil {
			t.Fatalf("accepted an invalid snapshot: %+v", got)
		}
	})
}

// FuzzFileList feeds arbitrary bytes to the file-list parser and the entry
// validation that every restore runs before writing anything.
func FuzzFileList(f *testing.F) {
	m := testManifest("20260102T030405.000001Z-abc")
	var seed []byte
	for _, e := range m.Nodes[0].Files {
		b, _ := json.Marshal(e)
		seed = append(append(seed, b...), '\n')
	}
	f.Add(seed)
	f.Add([]byte(`{"path":"../etc/passwd","type":"file","size":1}` + "\n"))
	f.Add([]byte(`{"path":"a","type":"symlink","link_target":"/etc"}` + "\n" + `{"path":"a/b","type":"file"}` + "\n"))
	f.Add([]byte(`{"path":"big","type":"file","size":1152921504606846976}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := appendFileList(nil, data, 1000)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error does not wrap ErrInvalidManifest: %v", err)
			}
			return
		}
		if len(files) > 1000 {
			t.Fatalf("parsed %d entries past the cap", len(files))
		}
		if ValidateEntries(files) == nil {
			for _, e := range files {
				if validatePath(e.Path) != nil || e.Size < 0 || e.Size > MaxFileSize {
					t.Fatalf("validation let through %+v", e)
				}
			}
		}
	})
}
