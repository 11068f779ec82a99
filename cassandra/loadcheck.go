package cassandra

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
)

// ErrTablesNotRestored marks a restore that loaded some tables but not
// all: the error names each failed table, Cassandra's reason and the
// state the table was left in.
var ErrTablesNotRestored = errors.New("cassandra tables not restored")

// TableFailure is one table a restore step could not load.
type TableFailure struct {
	Table  string `json:"table"`  // keyspace.table
	Reason string `json:"reason"` // Cassandra's own words (its log) or crayfish's check
	State  string `json:"state"`  // what the table holds now
}

func (f TableFailure) String() string {
	return fmt.Sprintf("%s: %s (table state: %s)", f.Table, f.Reason, f.State)
}

// tablesOutcome is what a load or import step did with each table.
type tablesOutcome struct {
	Failed   []TableFailure `json:"failed,omitempty"`
	Restored []string       `json:"restored,omitempty"`
}

func (o tablesOutcome) err() error {
	if len(o.Failed) == 0 {
		return nil
	}
	return tablesError(o.Failed, o.Restored)
}

// outcomeFile keeps a node's load or import outcome in its staging
// directory for the report step. The load and import steps of all nodes
// run side by side, and a failed step stops its siblings: a table that
// fails on one node must not stop the others' loads half way.
const outcomeFile = stateDir + "/outcome.json"

// recordOutcome writes the outcome for the report step (or removes an
// older one when every table was restored).
func (p *Plugin) recordOutcome(staged string, o tablesOutcome) error {
	name := filepath.Join(staged, filepath.FromSlash(outcomeFile))
	if len(o.Failed) == 0 {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	for _, f := range o.Failed {
		p.log.Error("cassandra table not restored", "table", f.Table, "reason", f.Reason, "state", f.State)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(name, b)
}

// reportOutcome fails naming the tables the load or import step recorded
// as not restored.
func reportOutcome(staged string) error {
	b, err := os.ReadFile(filepath.Join(staged, filepath.FromSlash(outcomeFile)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var o tablesOutcome
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadRestore, outcomeFile, err)
	}
	return o.err()
}

// tablesError is the step's error for failed tables; restored names the
// tables this step did load.
func tablesError(failed []TableFailure, restored []string) error {
	parts := make([]string, len(failed))
	for i, f := range failed {
		parts[i] = f.String()
	}
	msg := strings.Join(parts, "; ")
	if len(restored) > 0 {
		msg += "; restored on this node: " + strings.Join(restored, ", ")
	}
	return fmt.Errorf("%w: %s", ErrTablesNotRestored, msg)
}

// logMark is a position in Cassandra's system.log: what the node logs
// after it is what a restore step caused.
type logMark struct {
	path   string
	offset int64
	tail   []byte // the bytes before offset: the same file still holds them there
	info   os.FileInfo
}

// markLog notes the end of this node's system.log ("" path: no log
// configured or readable, so nothing can be confirmed from it).
func (p *Plugin) markLog() logMark {
	if p.cfg.LogFile == "" {
		return logMark{}
	}
	f, err := os.Open(p.cfg.LogFile)
	if err != nil {
		p.log.Warn("cannot read cassandra's system.log: SSTables skipped as corrupt will not be noticed", "cassandra_log_file", p.cfg.LogFile, "err", err)
		return logMark{}
	}
	defer f.Close()
	m := logMark{path: p.cfg.LogFile}
	if m.info, err = f.Stat(); err != nil {
		return logMark{}
	}
	m.offset = m.info.Size()
	m.tail = make([]byte, min(m.offset, 512))
	if _, err := f.ReadAt(m.tail, m.offset-int64(len(m.tail))); err != nil {
		return logMark{}
	}
	return m
}

// continues reports whether f is still the marked log, grown: the same
// file, at least as long, with the same bytes before the mark. A log
// rotated or truncated (a start script may do that) is read whole.
func (m logMark) continues(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || !os.SameFile(fi, m.info) || fi.Size() < m.offset {
		return false
	}
	b := make([]byte, len(m.tail))
	if _, err := f.ReadAt(b, m.offset-int64(len(b))); err != nil {
		return false
	}
	return bytes.Equal(b, m.tail)
}

// logEntry is one logged event: its level and its text (the first line
// and any stack trace below it).
type logEntry struct {
	level string
	lines []string
}

var logStart = regexp.MustCompile(`^(TRACE|DEBUG|INFO|WARN|ERROR)\s`)

// since reads the entries logged after the mark. A log that shrank was
// rotated or truncated (a restart may do that): it is read from its start.
func (m logMark) since() ([]logEntry, error) {
	if m.path == "" {
		return nil, nil
	}
	f, err := os.Open(m.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if m.continues(f) {
		if _, err := f.Seek(m.offset, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := logStart.FindStringSubmatch(line); m != nil {
			out = append(out, logEntry{level: m[1], lines: []string{line}})
		} else if len(out) > 0 && len(out[len(out)-1].lines) < 400 {
			out[len(out)-1].lines = append(out[len(out)-1].lines, line)
		}
	}
	return out, sc.Err()
}

// tableNeedle is how Cassandra's log names a table's files: by a path
// ending in /<keyspace>/<table>-<id>/ (its data directory or the
// directory an import reads).
func tableNeedle(ks, dir string) string { return "/" + ks + "/" + dir + "/" }

// problemsWith returns Cassandra's reasons for the entries that report a
// table's SSTables as failed or corrupt: errors naming the table's
// directory (needle: tableNeedle), and warnings about corruption there.
func problemsWith(entries []logEntry, needle string) []string {
	var out []string
	for _, e := range entries {
		text := strings.Join(e.lines, "\n")
		if !strings.Contains(text, needle) {
			continue
		}
		if e.level != "ERROR" && !(e.level == "WARN" && strings.Contains(strings.ToLower(text), "corrupt")) {
			continue
		}
		if reason := e.reason(); !slices.Contains(out, reason) {
			out = append(out, reason)
		}
	}
	return out
}

// reason is an entry's message and the root cause of its stack trace
// (the last "Caused by:").
func (e logEntry) reason() string {
	reason := message(e.lines[0])
	for i := len(e.lines) - 1; i > 0; i-- {
		if c, ok := strings.CutPrefix(strings.TrimSpace(e.lines[i]), "Caused by: "); ok {
			return reason + ": " + c
		}
	}
	return reason
}

// errorsIn returns Cassandra's reasons for the ERROR entries that name
// one of needles (its message and the root cause of its stack trace),
// without repeats: what the node logged about a stream it failed.
func errorsIn(entries []logEntry, needles ...string) []string {
	var out []string
	for _, e := range entries {
		if e.level != "ERROR" {
			continue
		}
		text := strings.Join(e.lines, "\n")
		if !slices.ContainsFunc(needles, func(n string) bool { return strings.Contains(text, n) }) {
			continue
		}
		if reason := e.reason(); !slices.Contains(out, reason) {
			out = append(out, reason)
		}
	}
	return out
}

// message is a log line's text after "File.java:123 - ".
func message(line string) string {
	if _, msg, ok := strings.Cut(line, " - "); ok {
		return strings.TrimSpace(msg)
	}
	return line
}

// tableState says what a table holds now after what the step did to it
// (done: "truncated", "SSTables skipped by Cassandra"), with the rows
// read through this node at consistency ONE (a count bounded in time: a
// big table may be reported with an unknown count).
func tableState(ctx context.Context, s *gocql.Session, ks, table, done string) string {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var n int64
	q := fmt.Sprintf("SELECT count(*) FROM %s.%s", quoteIdent(ks), quoteIdent(table))
	if err := s.Query(q).WithContext(cctx).Consistency(gocql.One).Scan(&n); err != nil {
		return fmt.Sprintf("%s, row count unknown (%v)", done, err)
	}
	return fmt.Sprintf("%s, %d rows readable through this node at ONE", done, n)
}
