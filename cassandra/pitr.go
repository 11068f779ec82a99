package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// A restore to a time (docs/cassandra-pitr.md) is a full restore of the
// newest backup finished by then, plus Cassandra's own point-in-time
// replay: each node stages the archived commit-log segments its
// backed-up counterpart closed since that backup began, up to the one
// that closed after the time, taken from the later backups that carry
// them; its load step has Cassandra copy them into the commit-log
// directory at start-up and replay the mutations written at or before
// the time (commitlog_archiving.properties' restore keys).

// ActionSegments stages the archived segments a restore to a time
// replays.
const ActionSegments = "segments"

// segmentsSub is where a node stages them (below the staging directory;
// in the restore's own state, which the other stage downloads keep):
// segmentsSub/commitlog/<name>.
const segmentsSub = stateDir + "/pitr"

// replayFile records, in the staging directory, what Cassandra replayed.
const replayFile = stateDir + "/replay.json"

// skewMargin widens the start of the replayed segments: a segment closed
// shortly before the backup began (by the node's clock) may still hold
// what its snapshot missed if clocks disagree. Replaying more is
// harmless: a mutation the SSTables hold applies again unchanged.
const skewMargin = time.Minute

// RestoresToTime: Cassandra replays its archived commit log to a time.
func (Driver) RestoresToTime() bool { return true }

// planToTime plans a restore of every node to req.ToTime: the full
// restore's phases, with the segment stages before load.
func planToTime(req plugin.RestoreRequest, reshaped bool) (plugin.Plan, error) {
	bad := func(format string, args ...any) (plugin.Plan, error) {
		return plugin.Plan{}, fmt.Errorf("%w: "+format, append([]any{plugin.ErrBadRequest}, args...)...)
	}
	switch {
	case req.Single:
		return bad("a single-node restore cannot go to a time: its replicas would read-repair it forward again (and hints and repair would bring back what came after the time); restore every node to the time")
	case len(req.Select) > 0:
		return bad("a table restore cannot go to a time: it truncates the tables first, and Cassandra does not replay commit-log positions older than a table's truncation; restore every node to the time")
	case reshaped:
		return bad("a restore to a time needs a cluster of the backup's size: each node replays its backed-up counterpart's commit log on that node's tokens")
	}
	t := req.ToTime.UTC()
	groups := map[string][]segmentGroup{}
	most := 0
	var keyspaces []string
	for _, n := range req.Nodes {
		meta, err := ParseNodeMeta(n.Meta)
		if err != nil {
			return plugin.Plan{}, fmt.Errorf("%w: backup %s, node %s: %v", plugin.ErrInvalidMeta, req.BackupID, n.Source, err)
		}
		for _, tb := range meta.Tables {
			ks, _, _ := strings.Cut(tb, ".")
			if !slices.Contains(keyspaces, ks) {
				keyspaces = append(keyspaces, ks)
			}
		}
		g, reach, ok := segmentsFor(req, n, meta)
		if !ok {
			how := "no archived commit-log segment closed since backup " + req.BackupID + " began"
			if !reach.IsZero() {
				how = "its archived commit log reaches " + reach.UTC().Format(time.RFC3339Nano)
			}
			return bad("node %s (backed-up node %s) cannot be restored to %s: %s in the backups up to %s and the log archives shipped since; wait until the segment holding the time has closed and been shipped (log_ship_interval), or take a backup after %s once it has closed (cassandra_commitlog_archive must be on)",
				n.Node, n.Source, t.Format(time.RFC3339Nano), how, lastBackup(req), t.Format(time.RFC3339Nano))
		}
		groups[n.Node] = g
		most = max(most, len(g))
	}
	slices.Sort(keyspaces)
	plan := restorePlan(req.Nodes, nil, false)
	var segPhases []plugin.Phase
	for i := range most {
		var ph plugin.Phase
		for _, n := range req.Nodes {
			if i >= len(groups[n.Node]) {
				continue
			}
			g := groups[n.Node][i]
			in, _ := json.Marshal(RestoreAction{Action: ActionSegments, Segments: g.names})
			ph.Actions = append(ph.Actions, plugin.Action{Node: n.Node, Input: in, Backup: g.backup, LogArchive: g.archive, Source: g.source})
		}
		segPhases = append(segPhases, ph)
	}
	var phases []plugin.Phase
	for _, ph := range plan.Phases {
		if len(ph.Actions) > 0 && actionOf(ph.Actions[0]) == ActionLoad {
			phases = append(phases, segPhases...)
			for i, a := range ph.Actions {
				var all []string
				for _, g := range groups[a.Node] {
					all = append(all, g.names...)
				}
				in, _ := json.Marshal(RestoreAction{Action: ActionLoad, ToTime: &t, Segments: all, Keyspaces: keyspaces})
				ph.Actions[i].Input = in
			}
		}
		phases = append(phases, ph)
	}
	plan.Phases = phases
	return plan, nil
}

func actionOf(a plugin.Action) string {
	var ra RestoreAction
	_ = json.Unmarshal(a.Input, &ra)
	return ra.Action
}

// lastBackup names the last backup the planner was given (log archives
// are not backups: the message says so separately).
func lastBackup(req plugin.RestoreRequest) string {
	last := req.BackupID
	for _, l := range req.Later {
		if l.BackupID != "" {
			last = l.BackupID
		}
	}
	return last
}

// segmentGroup is what one stage downloads: segments of one backup
// ("" for the restore's own) or log archive, from its node source.
type segmentGroup struct {
	backup, archive, source string
	names                   []string
}

// segmentsFor chooses the segments node n replays: those its backed-up
// counterpart (the node of the same Cassandra host id in each backup)
// closed since the backup began, up to the first closed at or after the
// time, each from the earliest backup (or log archive: Later holds the
// backups first) that carries it. ok is false when
// none closed at or after the time; reach is then the last close.
func segmentsFor(req plugin.RestoreRequest, n plugin.NodeAssignment, meta NodeMeta) (groups []segmentGroup, reach time.Time, ok bool) {
	type found struct {
		seg    Segment
		backup int // 0: the restore's backup; i: Later[i-1]
		source string
	}
	byName := map[string]found{}
	add := func(i int, source string, segs []Segment) {
		for _, s := range segs {
			if _, seen := byName[s.Name]; !seen {
				byName[s.Name] = found{seg: s, backup: i, source: source}
			}
		}
	}
	add(0, n.Source, meta.Commitlog)
	for i, l := range req.Later {
		if src, m, ok := counterpart(l, n.Source, meta.HostID); ok {
			add(i+1, src, m.Commitlog)
		}
	}
	all := make([]found, 0, len(byName))
	for _, f := range byName {
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b found) int { return compareSegments(a.seg, b.seg) })
	from := req.StartedAt.Add(-skewMargin)
	var chosen []found
	for _, f := range all {
		if f.seg.ClosedAt.Before(from) {
			continue
		}
		chosen = append(chosen, f)
		reach = f.seg.ClosedAt
		if !f.seg.ClosedAt.Before(req.ToTime) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, reach, false
	}
	byBackup := map[int]*segmentGroup{}
	var order []int
	for _, f := range chosen {
		g := byBackup[f.backup]
		if g == nil {
			g = &segmentGroup{source: f.source}
			if f.backup > 0 {
				l := req.Later[f.backup-1]
				g.backup, g.archive = l.BackupID, l.LogArchive
			}
			byBackup[f.backup] = g
			order = append(order, f.backup)
		}
		g.names = append(g.names, f.seg.Name)
	}
	slices.Sort(order)
	for _, i := range order {
		groups = append(groups, *byBackup[i])
	}
	return groups, reach, true
}

// counterpart finds in a later backup the node that is the same
// Cassandra node: the same host id (its identity), else the same node id.
func counterpart(l plugin.LaterBackup, source, hostID string) (string, NodeMeta, bool) {
	var byID *plugin.NodeAssignment
	for i, n := range l.Nodes {
		m, err := ParseNodeMeta(n.Meta)
		if err != nil {
			continue
		}
		if hostID != "" && m.HostID == hostID {
			return n.Source, m, true
		}
		if n.Source == source {
			byID = &l.Nodes[i]
		}
	}
	if byID != nil && hostID == "" {
		m, _ := ParseNodeMeta(byID.Meta)
		return byID.Source, m, true
	}
	return "", NodeMeta{}, false
}

// checkSegments confirms a segment stage left every segment it names.
func checkSegments(staged string, names []string) error {
	dir := filepath.Join(staged, filepath.FromSlash(segmentsSub), commitlogPrefix)
	for _, n := range names {
		if _, err := ParseSegmentName(n); err != nil {
			return fmt.Errorf("%w: %v", ErrBadRestore, err)
		}
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("%w: staged segment: %v", ErrBadRestore, err)
		}
	}
	return nil
}

// Replay is what a node's load step found Cassandra replayed: recorded
// as the step's result.
type Replay struct {
	ToTime    time.Time `json:"to_time"`
	Segments  int       `json:"segments"`  // archived segments Cassandra named as replayed
	Staged    int       `json:"staged"`    // segments the restore staged
	Mutations int64     `json:"mutations"` // "Log replay complete, N replayed mutations"
	Millis    int64     `json:"replay_ms"`
	Warnings  []string  `json:"warnings,omitempty"`
}

var (
	replayDone    = regexp.MustCompile(`Log replay complete, (\d+) replayed mutations in (\d+) ms`)
	replaySkipped = regexp.MustCompile(`Skipped \d+ mutations from unknown \(probably removed\) CF with id \S+`)
)

// replayFromLog reads what Cassandra logged of its start-up replay.
func replayFromLog(entries []logEntry, staged []string) Replay {
	var r Replay
	r.Staged = len(staged)
	seen := map[string]bool{}
	for _, e := range entries {
		text := strings.Join(e.lines, "\n")
		if rest, ok := strings.CutPrefix(message(e.lines[0]), "Replaying "); ok {
			for _, f := range strings.Split(rest, ",") {
				name := filepath.Base(strings.TrimSpace(f))
				if slices.Contains(staged, name) && !seen[name] {
					seen[name] = true
					r.Segments++
				}
			}
		}
		if m := replayDone.FindStringSubmatch(text); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			ms, _ := strconv.ParseInt(m[2], 10, 64)
			r.Mutations += n
			r.Millis += ms
		}
		if m := replaySkipped.FindString(text); m != "" {
			r.Warnings = append(r.Warnings, m+" (a table whose id changed: its mutations were not replayed)")
		}
		if strings.Contains(text, "All tables will be included in commit log replay") {
			r.Warnings = append(r.Warnings, "Cassandra replayed every table, system ones included: the start command did not pass CRAYFISH_CASSANDRA_JVM_OPTS (-Dcassandra.replayList) to the JVM")
		}
	}
	return r
}

// pitrBeforeStart prepares the load step of a restore to a time: the
// staged segments readable by Cassandra, the restore keys written for
// its next start, and the replay list for the start command (the JVM
// options it returns). pitrAfterStart removes the keys once Cassandra is
// up (a later restart must not replay again) and reads from the log
// whether the replay ran.
func (p *Plugin) pitrBeforeStart(ctx context.Context, staged string, a RestoreAction) ([]string, error) {
	dir := filepath.Join(staged, filepath.FromSlash(segmentsSub), commitlogPrefix)
	if err := checkSegments(staged, a.Segments); err != nil {
		return nil, err
	}
	owner, err := p.restoreOwner()
	if err != nil {
		return nil, err
	}
	// Cassandra runs restore_command itself: it must read them.
	for _, d := range []string{filepath.Join(staged, filepath.FromSlash(segmentsSub)), dir} {
		if err := owner.chown(d); err != nil {
			return nil, err
		}
	}
	for _, n := range a.Segments {
		if err := owner.chown(filepath.Join(dir, n)); err != nil {
			return nil, err
		}
	}
	if err := p.writeArchiving(&pitrRestore{Dirs: []string{dir}, To: *a.ToTime}); err != nil {
		return nil, err
	}
	// Only the backed-up user keyspaces replay: the archived segments
	// also hold the old node's system tables (its peers, its host id),
	// which must not come back onto the restored node.
	env := []string{"CRAYFISH_CASSANDRA_JVM_OPTS=-Dcassandra.replayList=" + strings.Join(a.Keyspaces, ",")}
	if len(a.Keyspaces) == 0 {
		env = nil
	}
	return env, nil
}

// pitrAfterStart removes the restore keys and records the replay.
func (p *Plugin) pitrAfterStart(staged string, a RestoreAction, mark logMark) error {
	if err := p.writeArchiving(nil); err != nil {
		return err
	}
	entries, err := mark.since()
	r := replayFromLog(entries, a.Segments)
	r.ToTime = *a.ToTime
	switch {
	case err != nil || mark.path == "":
		r.Warnings = append(r.Warnings, fmt.Sprintf("cannot read cassandra's system.log (%v): the replay is not confirmed", err))
	case r.Segments == 0:
		return fmt.Errorf("%w: cassandra did not replay the %d archived commit-log segments staged for it (is %s on its classpath?); it started with the backup's data only",
			ErrBadRestore, len(a.Segments), p.cfg.ArchivingFile)
	}
	p.log.Info("cassandra replayed the archived commit log", "to_time", r.ToTime, "segments", r.Segments, "staged", r.Staged,
		"mutations", r.Mutations, "replay_ms", r.Millis, "warnings", r.Warnings)
	b, _ := json.Marshal(r)
	return fsutil.WriteFileAtomicMode(filepath.Join(staged, filepath.FromSlash(replayFile)), b, 0o644)
}

// readReplay is the recorded replay of this node's load step.
func readReplay(staged string) json.RawMessage {
	b, err := os.ReadFile(filepath.Join(staged, filepath.FromSlash(replayFile)))
	if err != nil || !json.Valid(b) {
		return nil
	}
	return b
}
