package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{1024*1024 - 1, "1 MiB"}, // rounds up a unit, never "1024 KiB"
		{1258291, "1.2 MiB"},
		{50 << 20, "50 MiB"},
		{3 << 30, "3 GiB"},
		{5 << 40, "5 TiB"},
		{-2048, "-2 KiB"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0ms"},
		{350 * time.Millisecond, "350ms"},
		{time.Second, "1s"},
		{12300 * time.Millisecond, "12.3s"},
		{59960 * time.Millisecond, "1m00s"},
		{3*time.Minute + 4*time.Second, "3m04s"},
		{59*time.Minute + 59600*time.Millisecond, "1h00m"},
		{2*time.Hour + 5*time.Minute, "2h05m"},
		{76 * time.Hour, "3d04h"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestFormatProgress(t *testing.T) {
	for _, tc := range []struct {
		p    *fsm.Progress
		want string
	}{
		{nil, ""},
		{&fsm.Progress{}, ""},
		{&fsm.Progress{FilesDone: 10, FilesTotal: 100, BytesDone: 1258291, BytesTotal: 50 << 20}, "files 10/100, 1.2 MiB/50 MiB"},
		{&fsm.Progress{FilesDone: 3, BytesDone: 2048}, "files 3, 2 KiB"},
	} {
		if got := formatProgress(tc.p); got != tc.want {
			t.Errorf("formatProgress(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestStepLine(t *testing.T) {
	s := fsm.Step{Name: "upload", Node: "node1", State: fsm.StepRunning, Attempts: 1,
		Progress: &fsm.Progress{FilesDone: 10, FilesTotal: 100, BytesDone: 1258291, BytesTotal: 50 << 20}}
	if got, want := stepLine(1, 4, s), "step 2/4 upload@node1: running (files 10/100, 1.2 MiB/50 MiB)"; got != want {
		t.Errorf("stepLine = %q, want %q", got, want)
	}
	s = fsm.Step{Name: "commit", State: fsm.StepRunning, Attempts: 2}
	if got, want := stepLine(3, 4, s), "step 4/4 commit: running (attempt 2)"; got != want {
		t.Errorf("stepLine = %q, want %q", got, want)
	}
	s = fsm.Step{Name: "snapshot", Node: "n2", State: fsm.StepFailed, Attempts: 3, Error: "disk\tfull\n"}
	if got, want := stepLine(0, 4, s), "step 1/4 snapshot@n2: failed: disk full"; got != want {
		t.Errorf("stepLine = %q, want %q", got, want)
	}
}

func TestWriteSteps(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	steps := []fsm.Step{
		{Name: "snapshot", Node: "node1", State: fsm.StepDone, Attempts: 1, StartedAt: at(0), FinishedAt: at(1500 * time.Millisecond),
			Progress: &fsm.Progress{FilesDone: 100, FilesTotal: 100, BytesDone: 50 << 20, BytesTotal: 50 << 20}},
		{Name: "upload", Node: "node1", State: fsm.StepRunning, Attempts: 2, StartedAt: at(2 * time.Second),
			Progress: &fsm.Progress{FilesDone: 10, FilesTotal: 100, BytesDone: 1258291, BytesTotal: 50 << 20}},
		{Name: "commit", State: fsm.StepPending},
		{Name: "unlock", State: fsm.StepFailed, Always: true, Attempts: 3, Error: "lock\tlost"},
	}
	var buf bytes.Buffer
	if err := writeSteps(&buf, steps, t0.Add(3*time.Minute+6*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"#  STEP             NODE   STATE    ATTEMPTS  PROGRESS                      DURATION  ERROR\n" +
		"1  snapshot         node1  done     1         files 100/100, 50 MiB/50 MiB  1.5s      -\n" +
		"2  upload           node1  running  2         files 10/100, 1.2 MiB/50 MiB  3m04s     -\n" +
		"3  commit           -      pending  0         -                             -         -\n" +
		"4  unlock (always)  -      failed   3         -                             -         lock lost\n"
	if got := buf.String(); got != want {
		t.Errorf("writeSteps:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteOperations(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	fin := t0.Add(90 * time.Second)
	ops := []*api.Operation{
		{ID: "op-2", Kind: fsm.KindDelete, State: fsm.OpRunning, CreatedAt: t0,
			Params: fsm.Params{BackupIDs: []string{"b1", "b2"}},
			Steps:  []fsm.Step{{State: fsm.StepDone}, {State: fsm.StepRunning}}},
		{ID: "op-1", Kind: fsm.KindBackup, State: fsm.OpFailed, CreatedAt: t0, FinishedAt: &fin,
			BackupID: "b3", Error: "node2 unreachable", Steps: []fsm.Step{{State: fsm.StepFailed}}},
	}
	var buf bytes.Buffer
	if err := writeOperations(&buf, ops, t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	if !strings.HasPrefix(lines[0], "OPERATION  KIND    STATE") {
		t.Errorf("header = %q", lines[0])
	}
	for _, want := range []string{"op-2", "delete", "running", "10s", "1/2", "b1,b2"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{"op-1", "failed", "1m30s", "1/1", "b3", "node2 unreachable"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("line %q lacks %q", lines[2], want)
		}
	}
	// Columns line up.
	if strings.Index(lines[1], "delete") != strings.Index(lines[2], "backup") {
		t.Errorf("columns not aligned:\n%s", buf.String())
	}
}

func TestWriteBackupDetailFiles(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	d := &api.BackupDetail{
		Summary: storage.Summary{BackupID: "b1", StartedAt: t0, FinishedAt: t0.Add(time.Minute), Nodes: []string{"n1"},
			Stats: storage.NodeStats{Files: 2, Bytes: 3 << 20}},
		Manifest: &storage.Manifest{Nodes: []storage.NodeManifest{{NodeID: "n1",
			Stats: storage.NodeStats{Files: 2, Bytes: 3 << 20},
			Files: []storage.FileEntry{
				{Path: "data/a.db", Type: storage.TypeFile, Size: 3 << 20, Mode: 0o640, MTime: t0},
				{Path: "current", Type: storage.TypeSymlink, Mode: 0o777, LinkTarget: "data/a.db", MTime: t0},
			}}}},
	}
	var buf bytes.Buffer
	if err := writeBackupDetail(&buf, d); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Backup:     b1", "Size:       3 MiB", "Duration:   1m00s", "Files of n1:",
		"file     0640  3 MiB", "current -> data/a.db"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestWatcherThrottle(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.Local)
	var buf bytes.Buffer
	w := newWatcher(&buf, func() time.Time { return now })
	op := func(state fsm.OpState, steps ...fsm.Step) *api.Operation {
		return &api.Operation{ID: "op-1", State: state, Steps: steps}
	}
	prog := func(files int64) *fsm.Progress { return &fsm.Progress{FilesDone: files, FilesTotal: 100} }
	pending := fsm.Step{Name: "upload", Node: "n1", State: fsm.StepPending}

	w.update(op(fsm.OpRunning, fsm.Step{Name: "snap", State: fsm.StepRunning, Attempts: 1}, pending))
	now = now.Add(time.Second)
	w.update(op(fsm.OpRunning, fsm.Step{Name: "snap", State: fsm.StepDone, Attempts: 1},
		fsm.Step{Name: "upload", Node: "n1", State: fsm.StepRunning, Attempts: 1, Progress: prog(1)}))
	now = now.Add(500 * time.Millisecond) // progress too soon: not printed
	w.update(op(fsm.OpRunning, fsm.Step{Name: "snap", State: fsm.StepDone, Attempts: 1},
		fsm.Step{Name: "upload", Node: "n1", State: fsm.StepRunning, Attempts: 1, Progress: prog(5)}))
	now = now.Add(2 * time.Second) // now it is
	w.update(op(fsm.OpRunning, fsm.Step{Name: "snap", State: fsm.StepDone, Attempts: 1},
		fsm.Step{Name: "upload", Node: "n1", State: fsm.StepRunning, Attempts: 1, Progress: prog(50)}))
	now = now.Add(100 * time.Millisecond) // a state change is printed at once
	w.update(op(fsm.OpSucceeded, fsm.Step{Name: "snap", State: fsm.StepDone, Attempts: 1},
		fsm.Step{Name: "upload", Node: "n1", State: fsm.StepDone, Attempts: 1, Progress: prog(100)}))

	want := "" +
		"[12:00:00] step 1/2 snap: running\n" +
		"[12:00:01] step 1/2 snap: done\n" +
		"[12:00:01] step 2/2 upload@n1: running (files 1/100, 0 B)\n" +
		"[12:00:03] step 2/2 upload@n1: running (files 50/100, 0 B)\n" +
		"[12:00:03] step 2/2 upload@n1: done\n" +
		"[12:00:03] operation op-1 succeeded\n"
	if got := buf.String(); got != want {
		t.Errorf("watcher output:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteBackupDetailCassandra(t *testing.T) {
	meta, _ := json.Marshal(cassandra.NodeMeta{LocalNode: cassandra.LocalNode{HostID: "6c77c1f2-4660-4eda-be3b-cc199ffdaa81",
		DataCenter: "dc1", Rack: "r1", Tokens: []string{"-5", "7"}, Release: "5.0.9"}, Tables: []string{"ks.a", "ks.b", "ks.c"}})
	d := &api.BackupDetail{
		Summary:  storage.Summary{BackupID: "b1", Plugin: cassandra.Name, Nodes: []string{"n1", "n2"}},
		Manifest: &storage.Manifest{Plugin: cassandra.Name, Nodes: []storage.NodeManifest{{NodeID: "n1", Plugin: meta}, {NodeID: "n2"}}},
	}
	var buf bytes.Buffer
	if err := writeBackupDetail(&buf, d); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !regexp.MustCompile(`(?m)^n1\s+6c77c1f2-4660-4eda-be3b-cc199ffdaa81\s+dc1\s+r1\s+2\s+3\s+5\.0\.9\s*$`).MatchString(out) ||
		!strings.Contains(out, "CASSANDRA HOST ID") || !strings.Contains(out, "no cassandra metadata") {
		t.Errorf("cassandra node table missing or wrong:\n%s", out)
	}
}

func TestWriteGCReport(t *testing.T) {
	var rep storage.GCReport
	rep.Snapshots = 3
	rep.Classification.Referenced = storage.GCTally{Blobs: 10, Bytes: 4 << 20}
	rep.Classification.Condemned = storage.GCPackSet{Count: 12, Bytes: 12 << 20}
	for i := range 12 {
		rep.Classification.Condemned.Packs = append(rep.Classification.Condemned.Packs, storage.GCPack{Key: fmt.Sprintf("data/aa/p%02d", i), Size: 1 << 20})
	}
	rep.Classification.Repack = storage.GCPackSet{Count: 1, Bytes: 1 << 20, Packs: []storage.GCPack{{Key: "data/bb/r", Size: 1 << 20, DeadFraction: 0.5}}}
	var b strings.Builder
	if err := writeGCReport(&b, rep, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Referenced blobs:", "10 (4 MiB)", "Packs would be deleted (nothing referenced):", "12 (12 MiB)",
		"data/aa/p09", "... 2 more", "packs would be repacked (too much unreferenced): data/bb/r 1 MiB, 50% unreferenced"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "data/aa/p10") || strings.Contains(out, "Bytes freed") {
		t.Errorf("a dry run's output lists too much:\n%s", out)
	}
}
