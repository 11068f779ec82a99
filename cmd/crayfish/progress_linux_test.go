package main

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/crayfish-backup/crayfish/fsm"
)

// openPTY returns the two ends of a new pseudo-terminal of cols columns,
// the terminal end in raw mode (no \n to \r\n translation).
func openPTY(t *testing.T, cols int) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open tty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: uint16(cols)}); err != nil {
		t.Fatal(err)
	}
	if _, err := term.MakeRaw(int(tty.Fd())); err != nil {
		t.Fatal(err)
	}
	return ptm, tty
}

// runOnPTY feeds an upload to waitWatcher writing to a pseudo-terminal of
// cols columns and returns what the terminal got.
func runOnPTY(t *testing.T, cols int, noProgress bool) string {
	t.Setenv("TERM", "xterm")
	ptm, tty := openPTY(t, cols)
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptm) // until the tty end is closed (EIO)
		got <- string(b)
	}()
	now := progressT0
	update, stop := waitWatcher(tty, func() time.Time { return now }, noProgress)
	for _, files := range []int64{0, 10, 20, 30} {
		update(uploadOp(&fsm.Progress{FilesDone: files, FilesTotal: 40, BytesDone: files * mib, BytesTotal: 40 * mib}))
		now = now.Add(time.Second)
	}
	op := uploadOp(&fsm.Progress{FilesDone: 40, FilesTotal: 40, BytesDone: 40 * mib, BytesTotal: 40 * mib})
	op.Steps[2].State = fsm.StepDone
	op.State = fsm.OpFailed // ends the operation: its line comes last
	update(op)
	stop()
	tty.Close()
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no output from the pseudo-terminal")
		return ""
	}
}

func TestWaitWatcherTerminal(t *testing.T) {
	out := runOnPTY(t, 50, false)
	var bars []string
	for _, part := range strings.Split(out, "\r") {
		if strings.HasPrefix(part, "step 3/6 upload@n1 [") {
			bars = append(bars, strings.TrimRight(part, " "))
			if n := utf8.RuneCountInString(part); n > 49 {
				t.Errorf("bar of %d columns on a 50-column terminal: %q", n, part)
			}
		}
	}
	if len(bars) < 3 || !strings.Contains(bars[len(bars)-1], " 75%") {
		t.Errorf("bars drawn: %q\nraw: %q", bars, out)
	}
	want := []string{
		"[12:00:00] step 1/6 lock: done", // first sight, as in line mode
		"[12:00:00] step 2/6 snapshot@n1: done",
		"[12:00:00] step 3/6 upload@n1: running (files 0/40, 0 B/40 MiB)",
		"[12:00:04] step 3/6 upload@n1: done",
		"[12:00:04] operation op-1 failed",
		"",
	}
	if got := screen(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen:\n%s\nwant:\n%s\nraw: %q", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
}

func TestWaitWatcherTerminalNoProgress(t *testing.T) {
	out := runOnPTY(t, 50, true)
	if strings.Contains(out, "\r") || !strings.Contains(out, "running (files 20/40, 20 MiB/40 MiB)\n") {
		t.Errorf("--no-progress on a terminal: %q", out)
	}
}
