package storage

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// encodingJSON is what json.Encoder (HTML escaping on) writes for e,
// without its trailing newline: the reference AppendJSON must match.
func encodingJSON(t testing.TB, e *FileEntry) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func checkEntryJSON(t testing.TB, e *FileEntry) {
	t.Helper()
	want, werr := encodingJSON(t, e)
	got, gerr := e.AppendJSON([]byte("prefix"))
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%+v: encoding/json error %v, AppendJSON error %v", e, werr, gerr)
	}
	if werr != nil {
		return
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendJSON did not append: %q", got)
	}
	if got = got[len("prefix"):]; !bytes.Equal(got, want) {
		t.Fatalf("%+v:\nAppendJSON    %s\nencoding/json %s", e, got, want)
	}
}

func fullEntry() *FileEntry {
	uid, gid := uint32(1000), uint32(0)
	return &FileEntry{Path: "a/<b>&c\"d\\e\u2028\x01\tf\xff.db", Type: TypeFile, Size: 5 << 20, Mode: 0o644,
		MTime: time.Date(2026, 12, 5, 20, 1, 2, 3, time.FixedZone("x", 3600)), Content: ObjectID{1, 2},
		Chunks: []ObjectID{{3}, {4}}, LinkTarget: "../t\u2029", UID: &uid, GID: &gid}
}

// TestAppendJSONMatchesEncodingJSON holds the hand-written encoder to
// encoding/json. fullEntry must set every field: a field added to
// FileEntry and not to AppendJSON fails here.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	full := fullEntry()
	v := reflect.ValueOf(full).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullEntry leaves FileEntry.%s zero: set it, and encode it in AppendJSON", v.Type().Field(i).Name)
		}
	}
	cases := []*FileEntry{
		full,
		{Path: "d", Type: TypeDir, Mode: 0o755},
		{Path: "l", Type: TypeSymlink, LinkTarget: "/x y", MTime: time.Unix(0, 0).UTC()},
		{Path: "e", Type: TypeFile, Size: 0, Chunks: []ObjectID{}},
		{Path: "n", Type: TypeFile, Size: -1, MTime: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Path: "y", MTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, // refused by both
		{Path: "z", MTime: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Path: "", Type: ""},
	}
	for _, e := range cases {
		checkEntryJSON(t, e)
	}
	// Every byte value, alone and around multi-byte runes.
	for b := range 256 {
		checkEntryJSON(t, &FileEntry{Path: string([]byte{byte(b)}), LinkTarget: "é" + string([]byte{byte(b)}) + "\u2028"})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "/", "<", "&", "\x00", "\x7f", "é", "\u2028", "\u2029", "\ufffd", "\xc3", "\xe2\x80", "😀", "\"", "\\", "\n"}
	for range 2000 {
		var sb []byte
		for range rng.IntN(12) {
			sb = append(sb, alphabet[rng.IntN(len(alphabet))]...)
		}
		e := fullEntry()
		e.Path, e.LinkTarget = string(sb), string(sb[:len(sb)/2])
		e.MTime = time.Unix(rng.Int64N(1<<35), rng.Int64N(1e9))
		if rng.IntN(2) == 0 {
			e.MTime = e.MTime.UTC()
		}
		checkEntryJSON(t, e)
	}
}

// TestEncodedFileListDecodes: what SaveFiles writes, appendFileList reads
// back unchanged.
func TestEncodedFileListDecodes(t *testing.T) {
	full := fullEntry()
	full.Path = "a/b" // valid UTF-8: invalid bytes come back as U+FFFD
	full.LinkTarget = ""
	full.MTime = full.MTime.UTC()
	var data []byte
	for range 3 {
		var err error
		if data, err = full.AppendJSON(data); err != nil {
			t.Fatal(err)
		}
		data = append(data, '\n')
	}
	got, err := appendFileList(nil, data, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !reflect.DeepEqual(&got[2], full) {
		t.Fatalf("decoded %d entries, the last %+v; want %+v", len(got), got[len(got)-1], full)
	}
}

// FuzzEntryJSON: AppendJSON equals encoding/json on any strings, sizes,
// modes and times.
func FuzzEntryJSON(f *testing.F) {
	f.Add("a/<b>&c", "../\u2028", int64(5), uint32(0o644), int64(1700000000), int64(3), true)
	f.Add("\xff\x00\"\\", "", int64(0), uint32(0), int64(-62135596800), int64(0), false)
	f.Fuzz(func(t *testing.T, path, link string, size int64, mode uint32, sec, nsec int64, ids bool) {
		e := &FileEntry{Path: path, LinkTarget: link, Type: EntryType(link), Size: size, Mode: mode, MTime: time.Unix(sec, nsec)}
		if ids {
			e.Content = ObjectID{byte(size)}
			e.Chunks = []ObjectID{{byte(mode)}, {}}
			u := mode
			e.UID, e.GID = &u, &u
		}
		checkEntryJSON(t, e)
	})
}
