package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/storage"
)

// Formatting helpers of the client commands: pure functions of their
// inputs (the current time is a parameter) so they can be tested.

const timeLayout = "2006-01-02 15:04:05"

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns an aligning writer; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// cell makes s safe for one tabwriter cell: no tabs or line breaks, and
// "-" for empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Join(strings.Fields(s), " ")
}

// humanBytes formats n with binary units: "512 B", "1.2 KiB", "50 MiB".
func humanBytes(n int64) string {
	if n < 0 {
		return "-" + humanBytes(-n)
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	u := 0
	// Move up a unit when rounding to one decimal would print 1024.
	for v >= 1023.95 && u < len(units)-1 {
		v /= 1024
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[u]
}

// humanDuration formats d compactly: "350ms", "12.3s", "3m04s", "2h05m",
// "3d04h".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	if r := d.Round(100 * time.Millisecond); r < time.Minute {
		return strings.TrimSuffix(strconv.FormatFloat(r.Seconds(), 'f', 1, 64), ".0") + "s"
	}
	if r := d.Round(time.Second); r < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(r/time.Minute), int(r%time.Minute/time.Second))
	}
	if r := d.Round(time.Minute); r < 24*time.Hour {
		return fmt.Sprintf("%dh%02dm", int(r/time.Hour), int(r%time.Hour/time.Minute))
	}
	r := d.Round(time.Hour)
	return fmt.Sprintf("%dd%02dh", int(r/(24*time.Hour)), int(r%(24*time.Hour)/time.Hour))
}

// formatTime prints t in local time, "-" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// span is the duration from start to end, or to now while end is unset;
// "-" before start.
func span(start, end *time.Time, now time.Time) string {
	if start == nil || start.IsZero() {
		return "-"
	}
	if end != nil && !end.IsZero() {
		return humanDuration(end.Sub(*start))
	}
	return humanDuration(now.Sub(*start))
}

// formatProgress prints a step's counters: "files 10/100, 1.2 MiB/50 MiB".
// Totals of zero are left out; no progress gives "".
func formatProgress(p *fsm.Progress) string {
	if p == nil || *p == (fsm.Progress{}) {
		return ""
	}
	files := "files " + strconv.FormatInt(p.FilesDone, 10)
	if p.FilesTotal > 0 {
		files += "/" + strconv.FormatInt(p.FilesTotal, 10)
	}
	bytes := humanBytes(p.BytesDone)
	if p.BytesTotal > 0 {
		bytes += "/" + humanBytes(p.BytesTotal)
	}
	if p.Waiting != "" {
		return files + ", " + bytes + "; " + p.Waiting
	}
	return files + ", " + bytes
}

// stepLabel names step i of n: "step 2/4 upload@node1",
// "step 7/12 restore:load@n2".
func stepLabel(i, n int, s fsm.Step) string {
	name := stepName(s)
	if s.Node != "" {
		name += "@" + s.Node
	}
	return fmt.Sprintf("step %d/%d %s", i+1, n, name)
}

// stepLine is one --wait progress line, without the time stamp:
// "step 2/4 upload@node1: running (files 10/100, 1.2 MiB/50 MiB)".
func stepLine(i, n int, s fsm.Step) string {
	var extra []string
	if s.State == fsm.StepRunning && s.Attempts > 1 {
		extra = append(extra, "attempt "+strconv.Itoa(s.Attempts))
	}
	if s.State == fsm.StepRunning {
		if p := formatProgress(s.Progress); p != "" {
			extra = append(extra, p)
		}
	}
	line := stepLabel(i, n, s) + ": " + string(s.State)
	if len(extra) > 0 {
		line += " (" + strings.Join(extra, ", ") + ")"
	}
	if s.Error != "" {
		line += ": " + cell(s.Error)
	}
	return line
}

// writeSteps prints the steps of an operation as a table.
func writeSteps(w io.Writer, steps []fsm.Step, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "#\tSTEP\tNODE\tSTATE\tATTEMPTS\tPROGRESS\tDURATION\tERROR")
	for i, s := range steps {
		name := stepName(s)
		if s.Always {
			name += " (always)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			i+1, cell(name), cell(s.Node), s.State, s.Attempts,
			cell(formatProgress(s.Progress)), span(s.StartedAt, s.FinishedAt, now), cell(s.Error))
	}
	return tw.Flush()
}

// opDuration is the run time of an operation so far.
func opDuration(op *api.Operation, now time.Time) string {
	end := op.FinishedAt
	if end == nil && op.State.Terminal() {
		if op.UpdatedAt.IsZero() {
			return "-"
		}
		end = &op.UpdatedAt
	}
	return span(&op.CreatedAt, end, now)
}

// opBackups names the backups an operation makes, reads or deletes.
func opBackups(op *api.Operation) string {
	if op.BackupID != "" {
		return op.BackupID
	}
	if op.Params.BackupID != "" {
		return op.Params.BackupID
	}
	return strings.Join(op.Params.BackupIDs, ",")
}

func stepsDone(op *api.Operation) string {
	done := 0
	for _, s := range op.Steps {
		if s.State.Finished() {
			done++
		}
	}
	return fmt.Sprintf("%d/%d", done, len(op.Steps))
}

// writeOperation prints one operation: its fields, then its steps.
func writeOperation(w io.Writer, op *api.Operation, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Operation:\t%s\n", op.ID)
	fmt.Fprintf(tw, "Kind:\t%s\n", op.Kind)
	fmt.Fprintf(tw, "State:\t%s\n", op.State)
	if op.BackupID != "" {
		fmt.Fprintf(tw, "Backup:\t%s\n", op.BackupID)
	}
	if len(op.Params.BackupIDs) > 0 {
		fmt.Fprintf(tw, "Backups:\t%s\n", strings.Join(op.Params.BackupIDs, ", "))
	}
	if op.Params.Target != "" {
		fmt.Fprintf(tw, "Target:\t%s\n", op.Params.Target)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", formatTime(op.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", formatTime(op.UpdatedAt))
	if op.FinishedAt != nil {
		fmt.Fprintf(tw, "Finished:\t%s\n", formatTimePtr(op.FinishedAt))
	}
	fmt.Fprintf(tw, "Duration:\t%s\n", opDuration(op, now))
	fmt.Fprintf(tw, "Revision:\t%d\n", op.Revision)
	if op.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", cell(op.Error))
	}
	if sum := opSummary(op); sum != "" {
		fmt.Fprintf(tw, "Summary:\t%s\n", cell(sum))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(op.Steps) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	if err := writeSteps(w, op.Steps, now); err != nil {
		return err
	}
	return writeDamage(w, op)
}

// writePagedNote says which step results the agent served cut, and how
// to see them whole.
func writePagedNote(w io.Writer, op *api.Operation) error {
	var cut []string
	for i, st := range op.Steps {
		if st.ResultPaged == nil {
			continue
		}
		var lists []string
		for _, k := range slices.Sorted(maps.Keys(st.ResultPaged.Lists)) {
			lists = append(lists, fmt.Sprintf("%s %d", k, st.ResultPaged.Lists[k]))
		}
		name := st.Name
		if st.Node != "" {
			name += "@" + st.Node
		}
		cut = append(cut, fmt.Sprintf("step %d %s (%s; %s)", i, name, humanBytes(int64(st.ResultPaged.Bytes)), strings.Join(lists, ", ")))
	}
	if len(cut) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "\nLarge results shown cut to their first items: %s.\nAll of them: crayfish status %s --full-results\n",
		strings.Join(cut, "; "), op.ID)
	return err
}

// writeStarted prints an operation just started without --wait.
func writeStarted(w io.Writer, op *api.Operation) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Operation:\t%s\n", op.ID)
	fmt.Fprintf(tw, "Kind:\t%s\n", op.Kind)
	fmt.Fprintf(tw, "State:\t%s\n", op.State)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "Follow it with: crayfish status %s\n", op.ID)
	return err
}

// writeOperations prints a table of operations.
func writeOperations(w io.Writer, ops []*api.Operation, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "OPERATION\tKIND\tSTATE\tCREATED\tDURATION\tSTEPS\tBACKUP\tERROR")
	for _, op := range ops {
		if op == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(op.ID), op.Kind, op.State, formatTime(op.CreatedAt), opDuration(op, now),
			stepsDone(op), cell(opBackups(op)), cell(op.Error))
	}
	return tw.Flush()
}

// writeBackups prints a table of backup summaries.
func writeBackups(w io.Writer, backups []storage.Summary) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "BACKUP\tSTARTED\tDURATION\tNODES\tFILES\tSIZE\tSTORED")
	for _, b := range backups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			cell(b.BackupID), formatTime(b.StartedAt), span(&b.StartedAt, &b.FinishedAt, b.FinishedAt),
			cell(strings.Join(b.Nodes, ",")), b.Stats.Files, humanBytes(b.Stats.Bytes), humanBytes(b.Stats.StoredBytes))
	}
	return tw.Flush()
}

// writeBackupDetail prints one backup: summary, per-node stats and, when
// the manifest carries them, the file lists.
func writeBackupDetail(w io.Writer, d *api.BackupDetail) error {
	s := d.Summary
	tw := newTable(w)
	fmt.Fprintf(tw, "Backup:\t%s\n", s.BackupID)
	fmt.Fprintf(tw, "Operation:\t%s\n", cell(s.OperationID))
	fmt.Fprintf(tw, "Plugin:\t%s\n", cell(s.Plugin))
	fmt.Fprintf(tw, "Started:\t%s\n", formatTime(s.StartedAt))
	fmt.Fprintf(tw, "Finished:\t%s\n", formatTime(s.FinishedAt))
	fmt.Fprintf(tw, "Duration:\t%s\n", span(&s.StartedAt, &s.FinishedAt, s.FinishedAt))
	fmt.Fprintf(tw, "Nodes:\t%s\n", cell(strings.Join(s.Nodes, ", ")))
	fmt.Fprintf(tw, "Files:\t%d (dirs %d, symlinks %d)\n", s.Stats.Files, s.Stats.Dirs, s.Stats.Symlinks)
	fmt.Fprintf(tw, "Size:\t%s\n", humanBytes(s.Stats.Bytes))
	fmt.Fprintf(tw, "Uploaded:\t%d files, %s\n", s.Stats.UploadedFiles, humanBytes(s.Stats.UploadedBytes))
	fmt.Fprintf(tw, "Stored:\t%s\n", humanBytes(s.Stats.StoredBytes))
	if err := tw.Flush(); err != nil {
		return err
	}
	if d.Manifest == nil || len(d.Manifest.Nodes) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "NODE\tFILES\tDIRS\tSYMLINKS\tSIZE\tUPLOADED\tSTORED")
	for _, n := range d.Manifest.Nodes {
		st := n.Stats
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", cell(n.NodeID), st.Files, st.Dirs, st.Symlinks,
			humanBytes(st.Bytes), humanBytes(st.UploadedBytes), humanBytes(st.StoredBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ds, ok := describer(d.Manifest.Plugin); ok {
		if err := writePluginNodes(w, ds, d.Manifest.Nodes); err != nil {
			return err
		}
	}
	for _, n := range d.Manifest.Nodes {
		if len(n.Files) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nFiles of %s:\n", n.NodeID)
		if err := writeFiles(w, n.Files); err != nil {
			return err
		}
	}
	return nil
}

// writeFiles prints a file list like a long directory listing.
func writeFiles(w io.Writer, files []storage.FileEntry) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "TYPE\tMODE\tSIZE\tMODIFIED\tPATH")
	for _, f := range files {
		size := "-"
		if f.Type == storage.TypeFile {
			size = humanBytes(f.Size)
		}
		path := f.Path
		if f.Type == storage.TypeSymlink {
			path += " -> " + f.LinkTarget
		}
		fmt.Fprintf(tw, "%s\t%04o\t%s\t%s\t%s\n", f.Type, f.Mode, size, formatTime(f.MTime), cell(path))
	}
	return tw.Flush()
}

// writeCluster prints the Raft view of one agent and its members.
func writeCluster(w io.Writer, c *api.ClusterStatus) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Node:\t%s\n", cell(c.NodeID))
	fmt.Fprintf(tw, "State:\t%s\n", cell(c.State))
	leader := cell(c.LeaderID)
	if c.LeaderAddr != "" {
		leader += " (" + c.LeaderAddr + ")"
	}
	fmt.Fprintf(tw, "Leader:\t%s\n", leader)
	fmt.Fprintf(tw, "Term:\t%d\n", c.Term)
	fmt.Fprintf(tw, "Commit index:\t%d\n", c.CommitIndex)
	fmt.Fprintf(tw, "Applied index:\t%d\n", c.AppliedIndex)
	fmt.Fprintf(tw, "Last contact:\t%s\n", cell(c.LastContact))
	fmt.Fprintf(tw, "Epoch:\t%d\n", c.Epoch)
	fmt.Fprintf(tw, "Coordinator:\t%s\n", cell(c.Coordinator))
	fmt.Fprintf(tw, "Repository:\t%s\n", cell(c.RepositoryID))
	fmt.Fprintf(tw, "Time:\t%s\n", formatTime(c.Time))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "MEMBER\tGOSSIP\tRAFT ADDRESS\tHTTP ADDRESS\tSUFFRAGE\tZONE\tLEADER")
	for _, m := range c.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(m.ID), cell(m.Gossip), cell(m.RaftAddr), cell(m.HTTPAddr), cell(m.Suffrage), cell(m.Zone), leader)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range c.Members {
		if m.OtherRepository {
			fmt.Fprintf(w, "\nNOT ADMITTED: %s writes to repository %s; this cluster's is %s\n", cell(m.ID), cell(m.RepositoryID), cell(c.RepositoryID))
		}
	}
	return nil
}

// writeRestorePreview prints a restore's dry run, a block per node.
func writeRestorePreview(w io.Writer, p *api.RestorePreview) error {
	fmt.Fprintf(w, "Dry run of restoring backup %s (nothing was changed)\n", p.BackupID)
	for _, n := range p.Nodes {
		fmt.Fprintf(w, "\nnode %s", n.Node)
		if n.SourceNode != "" && n.SourceNode != n.Node {
			fmt.Fprintf(w, " (receives backup node %s)", n.SourceNode)
		}
		fmt.Fprintln(w)
		if n.Error != "" {
			fmt.Fprintf(w, "  refused: %s\n", n.Error)
			continue
		}
		target := n.Target
		if n.RealTarget != "" && n.RealTarget != n.Target {
			target += " (really " + n.RealTarget + ")"
		}
		fmt.Fprintf(w, "  target:     %s, %s\n", target, n.Mode)
		fmt.Fprintf(w, "  create:     %d files\n", n.Create)
		fmt.Fprintf(w, "  overwrite:  %d files\n", n.Overwrite)
		fmt.Fprintf(w, "  unchanged:  %d files (same size and mtime; content still compared)\n", n.Unchanged)
		fmt.Fprintf(w, "  delete:     %d paths\n", n.Delete)
		for _, d := range n.DeletePaths {
			fmt.Fprintf(w, "              - %s\n", cell(d))
		}
		if more := n.Delete - int64(len(n.DeletePaths)); more > 0 {
			fmt.Fprintf(w, "              ... and %d more\n", more)
		}
		fits := "fits"
		if !n.Fits {
			fits = "DOES NOT FIT"
		}
		fmt.Fprintf(w, "  download:   %s, %s free: %s\n", humanBytes(n.DownloadBytes), humanBytes(int64(min(n.FreeBytes, 1<<62))), fits)
	}
	return nil
}

// writePluginNodes prints what the backup's plugin recorded of each node,
// in the plugin's columns.
func writePluginNodes(w io.Writer, ds plugin.Describer, nodes []storage.NodeManifest) error {
	fmt.Fprintln(w)
	tw := newTable(w)
	cols := ds.DescribeColumns()
	fmt.Fprintln(tw, "NODE\t"+strings.Join(cols, "\t"))
	for _, n := range nodes {
		row, err := ds.Describe(n.Plugin)
		cells := []string{cell(n.NodeID)}
		for i, c := range cols {
			switch {
			case err != nil && i == 0:
				cells = append(cells, fmt.Sprintf("(%v)", err))
			case err != nil:
				cells = append(cells, "")
			default:
				cells = append(cells, cell(row[c]))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
