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

// ActionReplay has a node replay the archived commit log of restored
// tables up to the time (a table restore to a time): drain, stop, start
// with the restore keys and the tables as replay list.
const ActionReplay = "replay"

// planToTime plans a restore to req.ToTime: the full restore's phases,
// the table restore's (tables selects, with their views) or the
// single-node restore's, with the segment stages first (every download
// before anything is stopped, cleared or truncated); the full restore's
// load replays, a table restore ends with a replay on each node in turn,
// a single node replays at the start of its restore.
func planToTime(req plugin.RestoreRequest, reshaped bool, tables Selection, views map[string]string) (plugin.Plan, error) {
	if reshaped {
		return plugin.Plan{}, fmt.Errorf("%w: a restore to a time needs a cluster of the backup's size: each node replays its backed-up counterpart's commit log on that node's tokens", plugin.ErrBadRequest)
	}
	if len(tables) > 0 {
		tables = tables.WithViews(views)
	}
	groups, replay, err := timeSources(req, tables)
	if err != nil {
		return plugin.Plan{}, err
	}
	t := req.ToTime.UTC()
	replayInput := func(node, action string) json.RawMessage {
		var all []string
		for _, g := range groups[node] {
			all = append(all, g.names...)
		}
		in, _ := json.Marshal(RestoreAction{Action: action, Tables: tables, ToTime: &t, Segments: all, Keyspaces: replay})
		return in
	}
	plan := restorePlan(req.Nodes, tables, req.Single)
	segments := segmentPhases(req.Nodes, groups)
	if req.Single {
		// One node, back as it was at the time from its own backup and
		// log; its replicas then bring it forward again (hints, read
		// repair, repair): not a way to roll the cluster back.
		node := plan.Phases[0].Actions[0]
		node.Input = replayInput(node.Node, ActionNode)
		plan.Phases = append(segments, plugin.Phase{Actions: []plugin.Action{node}})
		return plan, nil
	}
	phases := append([]plugin.Phase{plan.Phases[0]}, segments...)
	for _, ph := range plan.Phases[1:] {
		switch actionOf(ph.Actions[0]) {
		case ActionLoad:
			for i, a := range ph.Actions {
				ph.Actions[i].Input = replayInput(a.Node, ActionLoad)
			}
		case ActionReport:
			if len(tables) > 0 && actionOf(phases[len(phases)-1].Actions[0]) != ActionReport {
				// A rolling restart: one node replays at a time, the
				// others serve.
				for _, n := range req.Nodes {
					phases = append(phases, plugin.Phase{Actions: []plugin.Action{{Node: n.Node, Input: replayInput(n.Node, ActionReplay)}}})
				}
			}
		}
		phases = append(phases, ph)
	}
	plan.Phases = phases
	return plan, nil
}

// timeSources finds each node's segment groups (segmentsFor) and what
// Cassandra replays: the backed-up user keyspaces, or, for a table
// restore, the selected tables and views (keyspace.table). A node whose
// archive does not reach the time is refused, naming how far it reaches.
func timeSources(req plugin.RestoreRequest, tables Selection) (map[string][]segmentGroup, []string, error) {
	t := req.ToTime.UTC()
	groups := map[string][]segmentGroup{}
	var replay []string
	for _, n := range req.Nodes {
		meta, err := ParseNodeMeta(n.Meta)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: backup %s, node %s: %v", plugin.ErrInvalidMeta, req.BackupID, n.Source, err)
		}
		for _, tb := range meta.Tables {
			ks, tn, _ := strings.Cut(tb, ".")
			name := ks
			if len(tables) > 0 {
				if !tables.Match(ks, tn) {
					continue
				}
				name = tb
			}
			if !slices.Contains(replay, name) {
				replay = append(replay, name)
			}
		}
		g, reach, ok := segmentsFor(req, n, meta)
		if !ok {
			how := "no archived commit-log segment closed since backup " + req.BackupID + " began"
			if !reach.IsZero() {
				how = "its archived commit log reaches " + reach.UTC().Format(time.RFC3339Nano)
			}
			return nil, nil, fmt.Errorf("%w: node %s (backed-up node %s) cannot be restored to %s: %s in the backups up to %s and the log archives shipped since; wait until the segment holding the time has closed and been shipped (log_ship_interval), or take a backup after %s once it has closed (cassandra_commitlog_archive must be on)",
				plugin.ErrBadRequest, n.Node, n.Source, t.Format(time.RFC3339Nano), how, lastBackup(req), t.Format(time.RFC3339Nano))
		}
		groups[n.Node] = g
	}
	slices.Sort(replay)
	return groups, replay, nil
}

// segmentPhases stage each node's segment groups, one group per phase.
func segmentPhases(nodes []plugin.NodeAssignment, groups map[string][]segmentGroup) []plugin.Phase {
	most := 0
	for _, g := range groups {
		most = max(most, len(g))
	}
	var out []plugin.Phase
	for i := range most {
		var ph plugin.Phase
		for _, n := range nodes {
			if i >= len(groups[n.Node]) {
				continue
			}
			g := groups[n.Node][i]
			in, _ := json.Marshal(RestoreAction{Action: ActionSegments, Segments: g.names})
			ph.Actions = append(ph.Actions, plugin.Action{Node: n.Node, Input: in, Backup: g.backup, LogArchive: g.archive, Source: g.source})
		}
		out = append(out, ph)
	}
	return out
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

// pitrBeforeStart prepares the load (or replay) step of a restore to a time: the
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

// replayTables is a table restore's replay on this node: the restored
// tables (their B0 files imported) get their archived mutations up to
// the time. Cassandra replays only at start-up, so the node restarts:
// drained first, so that no other table has anything left in the commit
// log (the replay list holds only the restored tables: an undrained
// table's unflushed writes would be skipped, i.e. lost). The import
// truncated the tables after the time; Cassandra clears a truncation
// record later than the restore point before it replays
// (CASSANDRA-9195), so the truncation does not stop the replay. A node
// that cannot be drained (Cassandra not running) is refused, not
// restarted.
func (p *Plugin) replayTables(ctx context.Context, staged string, a RestoreAction) error {
	if a.ToTime == nil || len(a.Keyspaces) == 0 {
		return fmt.Errorf("%w: a replay needs a time and the tables to replay", ErrBadRestore)
	}
	env, err := p.pitrBeforeStart(ctx, staged, a)
	if err != nil {
		return err
	}
	if _, err := p.nodetool(ctx, "drain"); err != nil {
		_ = p.writeArchiving(nil)
		return fmt.Errorf("nodetool drain (every table flushed before the restart that replays the restored ones; start Cassandra and repeat the restore): %w", err)
	}
	if err := p.stop(ctx); err != nil {
		return err
	}
	mark := p.markLog()
	if err := p.start(ctx, env...); err != nil {
		return err
	}
	return p.pitrAfterStart(staged, a, mark)
}

// readReplay is the recorded replay of this node's load step.
func readReplay(staged string) json.RawMessage {
	b, err := os.ReadFile(filepath.Join(staged, filepath.FromSlash(replayFile)))
	if err != nil || !json.Valid(b) {
		return nil
	}
	return b
}
