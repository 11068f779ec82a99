package cassandra

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSegmentName(t *testing.T) {
	for name, want := range map[string]int64{
		"CommitLog-7-1733350000000.log": 1733350000000,
		"CommitLog-8-42.log":            42,
	} {
		if got, err := ParseSegmentName(name); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "CommitLog-7-.log", "CommitLog-x-1.log", "CommitLog-7-1.log.tmp", ".CommitLog-7-1.log.tmp",
		"CommitLog-7-1", "commitlog-7-1.log", "CommitLog-7--1.log", "CommitLog-7-1-2.log", "CDC-7-1.log"} {
		if _, err := ParseSegmentName(bad); err == nil {
			t.Errorf("%q parsed as a segment name", bad)
		}
	}
}

// TestArchiveSegment: a hard link under the segment's name (never a
// partial file), kept on a repeat and when Cassandra's start-up pass
// archives it again after the original is gone; a bad name or a missing
// file is an error.
func TestArchiveSegment(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	seg := filepath.Join(dir, "CommitLog-7-5.log")
	if err := os.WriteFile(seg, []byte("mutations"), 0o644); err != nil {
		t.Fatal(err)
	}
	closed := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	if err := os.Chtimes(seg, closed, closed); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ArchiveSegment(spool, seg, "CommitLog-7-5.log"); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.Stat(seg)
	b, err := os.Stat(filepath.Join(spool, "CommitLog-7-5.log"))
	if err != nil || !os.SameFile(a, b) || !b.ModTime().Equal(closed) {
		t.Fatalf("spooled segment: %v %v", b, err)
	}
	entries, _ := os.ReadDir(spool)
	if len(entries) != 1 {
		t.Fatalf("spool holds %d entries, want the segment only", len(entries))
	}
	if err := copyKeepingTime(seg, filepath.Join(dir, "copy"), a); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.Stat(filepath.Join(dir, "copy")); !c.ModTime().Equal(closed) || c.Size() != a.Size() {
		t.Fatalf("a copy across file systems keeps the close time: %v", c.ModTime())
	}
	if err := ArchiveSegment(spool, filepath.Join(dir, "gone"), "CommitLog-7-6.log"); err == nil {
		t.Fatal("archived a missing file")
	}
	if err := ArchiveSegment(spool, seg, "../CommitLog-7-5.log"); err == nil {
		t.Fatal("archived under a name outside the spool")
	}
	segs, err := spooledSegments(spool)
	if err != nil || len(segs) != 1 || segs[0].ID != 5 || !segs[0].ClosedAt.Equal(closed) {
		t.Fatalf("spooled: %+v %v", segs, err)
	}
}

// TestLinkSegments: a snapshot carries the spooled segments and drops
// those closed longer than the keep time ago.
func TestLinkSegments(t *testing.T) {
	dir := t.TempDir()
	p := &Plugin{cfg: Config{SpoolDir: filepath.Join(dir, "spool"), CommitlogKeep: time.Hour}}
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	if err := os.MkdirAll(p.cfg.SpoolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, age := range map[string]time.Duration{"CommitLog-7-1.log": 2 * time.Hour, "CommitLog-7-2.log": 10 * time.Minute, ".CommitLog-7-3.log.tmp": 0} {
		f := filepath.Join(p.cfg.SpoolDir, name)
		if err := os.WriteFile(f, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	tree := filepath.Join(dir, "tree")
	segs, err := p.linkSegments(tree, now)
	if err != nil || len(segs) != 1 || segs[0].Name != "CommitLog-7-2.log" {
		t.Fatalf("linked %+v %v", segs, err)
	}
	if _, err := os.Stat(filepath.Join(tree, "commitlog", "CommitLog-7-2.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.cfg.SpoolDir, "CommitLog-7-1.log")); !os.IsNotExist(err) {
		t.Fatalf("a segment older than the keep time stayed in the spool: %v", err)
	}
}

func TestArchivingProperties(t *testing.T) {
	got, err := archivingProperties(true, "/usr/bin/crayfish", "/var/lib/crayfish/plugin/cassandra/commitlog", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"archive_command=/usr/bin/crayfish cassandra-archive-segment /var/lib/crayfish/plugin/cassandra/commitlog %path %name\n",
		"restore_command=\n", "restore_directories=\n", "restore_point_in_time=\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
	at := time.Date(2026, 12, 4, 21, 30, 5, 123456789, time.FixedZone("CET", 3600))
	got, err = archivingProperties(false, "", "", &pitrRestore{Dirs: []string{"/a/x", "/b/y"}, To: at})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"archive_command=\n", "restore_command=/bin/cp -f %from %to\n", "restore_directories=/a/x,/b/y\n",
		"restore_point_in_time=2026:12:04 20:30:05.123456\n", "precision=MICROSECONDS\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
	for _, bad := range []struct{ exe, spool, dir string }{{"/opt/my tools/crayfish", "/s", "/d"}, {"/c", "/s p", "/d"}, {"/c", "/s", "/d,e"}, {"/c", "/s", "/d e"}} {
		if _, err := archivingProperties(true, bad.exe, bad.spool, &pitrRestore{Dirs: []string{bad.dir}, To: at}); err == nil {
			t.Errorf("%+v: accepted a word Cassandra would split", bad)
		}
	}
	p := &Plugin{cfg: Config{ArchivingFile: filepath.Join(t.TempDir(), "commitlog_archiving.properties"), CommitlogArchive: true, Executable: "/c", SpoolDir: "/s"}, log: discardLogger()}
	for range 2 {
		if err := p.writeArchiving(nil); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := os.Stat(p.cfg.ArchivingFile); err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("properties file: %v %v (Cassandra must read it)", info, err)
	}
}

func TestReplayFromLog(t *testing.T) {
	entries := []logEntry{
		{level: "INFO", lines: []string{"INFO  [main] 2026-12-04 21:00:00,000 CommitLogReplayer.java:1 - Tables to be replayed: [pitr]"}},
		{level: "INFO", lines: []string{"INFO  [main] 2026-12-04 21:00:00,000 CommitLog.java:1 - Replaying /c/CommitLog-7-1.log, /c/CommitLog-7-2.log, /c/CommitLog-7-99.log"}},
		{level: "INFO", lines: []string{"INFO  [main] 2026-12-04 21:00:01,000 CommitLog.java:1 - Log replay complete, 1234 replayed mutations in 567 ms"}},
	}
	r := replayFromLog(entries, []string{"CommitLog-7-1.log", "CommitLog-7-2.log"})
	if r.Segments != 2 || r.Staged != 2 || r.Mutations != 1234 || r.Millis != 567 || len(r.Warnings) != 0 {
		t.Fatalf("%+v", r)
	}
	r = replayFromLog([]logEntry{{level: "INFO", lines: []string{"INFO x - All tables will be included in commit log replay."}}}, nil)
	if len(r.Warnings) != 1 {
		t.Fatalf("%+v", r)
	}
}

// A full restore's reset moves the old history's segments aside, never
// deletes them (some may be in no backup), and a repeat changes nothing.
func TestRetireSpool(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	p := &Plugin{cfg: Config{SpoolDir: spool}, log: discardLogger()}
	if err := p.retireSpool(); err != nil { // no spool yet
		t.Fatal(err)
	}
	if err := os.MkdirAll(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(spool, "CommitLog-7-1.log")
	if err := os.WriteFile(seg, []byte("segment"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.retireSpool(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("spool still holds %v", left)
	}
	kept, _ := filepath.Glob(filepath.Join(spool+".retired", "*", "CommitLog-7-1.log"))
	if len(kept) != 1 {
		t.Fatalf("retired segments: %v", kept)
	}
	if b, err := os.ReadFile(kept[0]); err != nil || string(b) != "segment" {
		t.Fatalf("retired segment: %q %v", b, err)
	}
	if err := p.retireSpool(); err != nil {
		t.Fatal(err)
	}
	if again, _ := filepath.Glob(filepath.Join(spool+".retired", "*")); len(again) != 1 {
		t.Fatalf("a repeat retired again: %v", again)
	}
}
