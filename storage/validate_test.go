package storage

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateManifest(t *testing.T) {
	content := HashBytes([]byte("x"))
	chunks := []ObjectID{content}
	file := func(p string) FileEntry {
		return FileEntry{Path: p, Type: TypeFile, Size: 1, Content: content, Chunks: chunks}
	}
	withFiles := func(files ...FileEntry) func(m *Manifest) {
		return func(m *Manifest) { m.Nodes[0].Files, m.Nodes[0].Entries = files, int64(len(files)) }
	}
	three := []ObjectID{HashBytes([]byte("1")), HashBytes([]byte("2")), HashBytes([]byte("3"))}
	cases := []struct {
		name   string
		change func(m *Manifest)
		want   string // "" = valid; otherwise part of the error message
	}{
		{"valid", func(m *Manifest) {}, ""},
		{"no nodes", func(m *Manifest) { m.Nodes = nil }, ""},
		{"implied parents", withFiles(file("a/b/c/d")), ""},
		{"listed parent dir", withFiles(FileEntry{Path: "a", Type: TypeDir}, file("a/b")), ""},
		{"dir listed after child", withFiles(file("a/b"), FileEntry{Path: "a", Type: TypeDir}), ""},
		{"dotfile", withFiles(file(".hidden"), file("a/..b"), file("...")), ""},
		{"three chunks", withFiles(FileEntry{Path: "big", Type: TypeFile, Size: 2*ChunkSize + 1, Content: content, Chunks: three}), ""},
		{"snapshot without file lists", func(m *Manifest) { m.Nodes[0].Files = nil }, ""},
		{"chunk count", withFiles(FileEntry{Path: "big", Type: TypeFile, Size: 2 * ChunkSize, Content: content, Chunks: three}), "3 chunks"},
		{"no chunks", withFiles(FileEntry{Path: "a", Type: TypeFile, Size: 1, Content: content}), "0 chunks"},
		{"single chunk differs", withFiles(FileEntry{Path: "a", Type: TypeFile, Size: 1, Content: content, Chunks: three[:1]}), "differs"},
		{"dir with chunks", withFiles(FileEntry{Path: "a", Type: TypeDir, Chunks: chunks}), "dir with chunks"},
		{"entries without tree", func(m *Manifest) { m.Nodes[0].Tree = nil }, "no tree blobs"},
		{"loaded count differs", func(m *Manifest) { m.Nodes[0].Entries++ }, "entries listed"},
		{"same path on two nodes", func(m *Manifest) {
			m.Nodes[1].Files, m.Nodes[1].Entries, m.Nodes[1].Tree = []FileEntry{m.Nodes[0].Files[1]}, 1, m.Nodes[0].Tree
		}, ""},

		{"format version", func(m *Manifest) { m.FormatVersion = 99 }, "format_version 99"},
		{"bad backup id", func(m *Manifest) { m.BackupID = "../../x" }, "invalid backup id"},
		{"empty backup id", func(m *Manifest) { m.BackupID = "" }, "invalid backup id"},
		{"backup id with slash", func(m *Manifest) { m.BackupID = "a/b" }, "invalid backup id"},
		{"reserved backup id suffix", func(m *Manifest) { m.BackupID = "x.tmp" }, "invalid backup id"},
		{"empty node id", func(m *Manifest) { m.Nodes[1].NodeID = "" }, "empty node id"},
		{"duplicate node id", func(m *Manifest) { m.Nodes[1].NodeID = m.Nodes[0].NodeID }, "appears twice"},
		{"negative stats", func(m *Manifest) { m.Nodes[0].Stats.Bytes = -1 }, "negative stats"},

		{"dotdot prefix", withFiles(file("../x")), `".." element`},
		{"dotdot alone", withFiles(file("..")), `".." element`},
		{"absolute", withFiles(file("/etc/passwd")), "absolute path"},
		{"dotdot inside", withFiles(file("a/../../b")), "not clean"},
		{"dotdot resolving inside", withFiles(file("a/../b")), "not clean"},
		{"double slash", withFiles(file("a//b")), "not clean"},
		{"trailing slash", withFiles(file("a/")), "not clean"},
		{"dot element", withFiles(file("./a")), "not clean"},
		{"empty path", withFiles(file("")), "empty path"},
		{"dot path", withFiles(file(".")), "empty path"},
		{"NUL", withFiles(file("a\x00b")), "NUL"},
		{"duplicate path", withFiles(file("a"), file("b"), file("a")), "appears twice"},
		{"absurd size", withFiles(FileEntry{Path: "a", Type: TypeFile, Size: 1 << 60, Content: content}), "size"},
		{"negative size", withFiles(FileEntry{Path: "a", Type: TypeFile, Size: -1, Content: content}), "size"},
		{"unknown type", withFiles(FileEntry{Path: "a", Type: "fifo"}), "unknown type"},
		{"empty type", withFiles(FileEntry{Path: "a"}), "unknown type"},
		{"file without content", withFiles(FileEntry{Path: "a", Type: TypeFile, Size: 3, Chunks: chunks}), "without content"},
		{"empty file with content", withFiles(FileEntry{Path: "a", Type: TypeFile, Content: content}), "empty file with content"},
		{"dir with size", withFiles(FileEntry{Path: "a", Type: TypeDir, Size: 4096}), "dir with size"},
		{"dir with content", withFiles(FileEntry{Path: "a", Type: TypeDir, Content: content}), "dir with size or content"},
		{"symlink with content", withFiles(FileEntry{Path: "a", Type: TypeSymlink, LinkTarget: "b", Content: content}), "symlink with size"},
		{"symlink without target", withFiles(FileEntry{Path: "a", Type: TypeSymlink}), "without target"},
		{"symlink target NUL", withFiles(FileEntry{Path: "a", Type: TypeSymlink, LinkTarget: "b\x00"}), "NUL"},
		{"file with link target", withFiles(FileEntry{Path: "a", Type: TypeFile, LinkTarget: "b"}), "link target"},
		{"mode bits", withFiles(FileEntry{Path: "a", Type: TypeDir, Mode: 0o20000000755}), "mode"},
		{"parent is symlink", withFiles(FileEntry{Path: "a", Type: TypeSymlink, LinkTarget: "/etc"}, file("a/passwd")), "parent \"a\" is a symlink"},
		{"parent is file", withFiles(file("a/b/c"), file("a")), "parent \"a\" is a file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := testManifest("20260101T000000Z-a")
			c.change(m)
			err := ValidateManifest(m)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid manifest rejected: %v", err)
			case c.want != "" && !errors.Is(err, ErrInvalidManifest):
				t.Fatalf("err = %v, want ErrInvalidManifest", err)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	if err := ValidateManifest(nil); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("ValidateManifest(nil) = %v", err)
	}
}

func TestValidBackupID(t *testing.T) {
	for id, want := range map[string]bool{
		"20260101T000000Z-a1b2":  true,
		"a":                      true,
		"a.b_c-d":                true,
		"":                       false,
		".a":                     false,
		"-a":                     false,
		"../../x":                false,
		"a/b":                    false,
		"a b":                    false,
		"x.tmp":                  false,
		"x.attrs":                false,
		"x.tmp2":                 true,
		strings.Repeat("a", 128): true,
		strings.Repeat("a", 129): false,
	} {
		if got := ValidBackupID(id); got != want {
			t.Errorf("ValidBackupID(%q) = %v, want %v", id, got, want)
		}
	}
}
