package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// A restore onto a cluster of another size cannot put SSTables back by
// token (the ranges the backed-up nodes owned are not the new nodes'), so
// it streams them into the running cluster with Cassandra's bulk loader
// (sstableloader, org.apache.cassandra.tools.BulkLoader): the loader
// reads each SSTable and sends every partition to the replicas that own
// it now. The backed-up nodes are shared among the current ones; each
// stages its share, one backed-up node per subdirectory:
//
//	stage (per backed-up node) → schema (first node) → check (each node)
//	→ truncate, drop SAI indexes (first node) → stream (each node)
//	→ create the SAI indexes again (first node, always) → report (each node)
//
// Materialized views are not streamed: a table with views receives
// streamed data through its write path (Cassandra's stream receiver
// applies it as mutations when the table has views), so the views are
// rebuilt from the base table's rows; streaming the view's own SSTables
// as well would write every view row twice. Secondary indexes are not
// streamed either: the receiving nodes index what they receive.

// ActionStream streams the staged SSTables with the bulk loader.
const ActionStream = "stream"

// sourcesDir holds, in the staging directory, one subdirectory per
// backed-up node a node stages (a reshaped restore).
const sourcesDir = "sources"

// sourceSub is the staging subdirectory of backed-up node src.
func sourceSub(src string) string { return sourcesDir + "/" + src }

// validSource reports whether a backed-up node's id can name a staging
// subdirectory.
func validSource(src string) bool {
	return src != "" && src != "." && src != ".." && !strings.ContainsAny(src, `/\`) && src != stateDir
}

// reshapePlan restores onto the running cluster whatever its size:
// every backed-up node's files staged on some node, the schema created,
// the tables truncated, then streamed. Each node first takes its own
// assigned backed-up node, then the unplaced ones go to the nodes with
// the fewest, in node order; a node with none has nothing to do.
func reshapePlan(req plugin.RestoreRequest, sel Selection, views map[string]string) plugin.Plan {
	var nodes []string
	share := map[string][]string{}
	for _, n := range req.Nodes {
		nodes = append(nodes, n.Node)
		if !n.Clear && n.Source != "" {
			share[n.Node] = append(share[n.Node], n.Source)
		}
	}
	for _, u := range req.Unplaced {
		least := nodes[0]
		for _, n := range nodes[1:] {
			if len(share[n]) < len(share[least]) {
				least = n
			}
		}
		share[least] = append(share[least], u.Source)
	}
	var busy []string // nodes with something to stream, in node order
	most := 0
	for _, n := range nodes {
		if len(share[n]) > 0 {
			busy = append(busy, n)
			most = max(most, len(share[n]))
		}
	}
	skip := slices.Sorted(maps.Keys(views))
	base := RestoreAction{Tables: sel, Skip: skip}
	input := func(action string, mod func(*RestoreAction)) json.RawMessage {
		a := base
		a.Action = action
		if mod != nil {
			mod(&a)
		}
		b, _ := json.Marshal(a)
		return b
	}
	var phases []plugin.Phase
	for i := range most {
		var ph plugin.Phase
		for _, n := range busy {
			if i < len(share[n]) {
				src := share[n][i]
				ph.Actions = append(ph.Actions, plugin.Action{Node: n, Source: src,
					Input: input(ActionStage, func(a *RestoreAction) { a.Source = src })})
			}
		}
		phases = append(phases, ph)
	}
	on := func(action string, only ...string) {
		var ph plugin.Phase
		for _, n := range busy {
			if len(only) == 0 || slices.Contains(only, n) {
				ph.Actions = append(ph.Actions, plugin.Action{Node: n,
					Input: input(action, func(a *RestoreAction) { a.Sources = share[n] })})
			}
		}
		phases = append(phases, ph)
	}
	first := busy[0]
	on(ActionSchema, first)
	on(ActionCheck)
	on(ActionTruncate, first)
	on(ActionStream)
	// The SAI indexes the truncate step dropped come back even when a
	// stream failed (sai.go).
	reindex, _ := json.Marshal(RestoreAction{Action: ActionReindex, Sources: share[first]})
	phases = append(phases, plugin.Phase{Actions: []plugin.Action{{Node: first, Input: reindex, Always: true}}})
	report, _ := json.Marshal(RestoreAction{Action: ActionReport})
	for _, n := range busy {
		phases = append(phases, plugin.Phase{Actions: []plugin.Action{{Node: n, Input: report, Always: true}}})
	}
	return plugin.Plan{Phases: phases, Staged: true}
}

// reshaped reports whether a is an action of a reshaped restore.
func (a RestoreAction) reshaped() bool { return a.Source != "" || len(a.Sources) > 0 }

// reshapeFilter is what a reshaped restore's stage downloads: the
// backed-up node's cassandra/ and its user tables (the selected ones),
// without views. Later actions work on what the stage phases staged.
func reshapeFilter(a RestoreAction) (include, exclude []string, needed bool) {
	if a.Action != ActionStage {
		return nil, nil, false
	}
	if len(a.Tables) > 0 {
		include = []string{"cassandra/**"}
		for _, p := range a.Tables {
			ks, t, _ := strings.Cut(p, ".")
			include = append(include, dataPrefix+"/"+ks+"/"+t+"-*")
		}
	}
	for ks := range systemKeyspaces {
		exclude = append(exclude, dataPrefix+"/"+ks)
	}
	for _, v := range a.Skip {
		ks, t, _ := strings.Cut(v, ".")
		exclude = append(exclude, dataPrefix+"/"+ks+"/"+t+"-*")
	}
	slices.Sort(exclude)
	return include, exclude, true
}

// restoreReshaped performs an action of a reshaped restore; staged is
// the staging directory, with a subdirectory per backed-up node.
func (p *Plugin) restoreReshaped(ctx context.Context, staged string, a RestoreAction) error {
	dirs := make([]string, len(a.Sources))
	for i, src := range a.Sources {
		if !validSource(src) {
			return fmt.Errorf("%w: backed-up node %q", ErrBadRestore, src)
		}
		dirs[i] = filepath.Join(staged, filepath.FromSlash(sourceSub(src)))
		if _, err := os.Stat(dirs[i]); err != nil {
			return fmt.Errorf("%w: the files of backed-up node %s are not staged here (was the staging directory lost?): %v", ErrBadRestore, src, err)
		}
	}
	switch a.Action {
	case ActionStage:
		if err := p.loaderReady(); err != nil {
			return err
		}
		return p.checkStaged(filepath.Join(staged, filepath.FromSlash(sourceSub(a.Source))), a.Tables)
	case ActionSchema:
		if len(dirs) == 0 {
			return fmt.Errorf("%w: schema: no staged backed-up node", ErrBadRestore)
		}
		return p.restoreSchema(ctx, dirs[0], a.Tables)
	case ActionCheck:
		for _, d := range dirs {
			if err := p.checkAgainstRunning(ctx, d, a.Tables); err != nil {
				return err
			}
		}
		return nil
	case ActionTruncate:
		if len(dirs) == 0 {
			return fmt.Errorf("%w: truncate: no staged backed-up node", ErrBadRestore)
		}
		if err := p.truncateBackedUp(ctx, dirs[0], a.Tables); err != nil {
			return err
		}
		return p.dropSAIIndexes(ctx, staged, dirs[0], a.Tables)
	case ActionReindex:
		return p.recreateSAIIndexes(ctx, staged)
	case ActionStream:
		return p.streamStaged(ctx, staged, a)
	}
	return fmt.Errorf("%w: action %q in a restore onto another cluster size", ErrBadRestore, a.Action)
}

// loaderReady refuses, before anything is changed, a loader that could
// not reach a cluster speaking TLS: the loader takes Java key stores (or
// a cassandra.yaml with client_encryption_options), not the PEM files of
// cassandra_tls_*, so its command line must carry them.
func (p *Plugin) loaderReady() error {
	if p.cfg.TLSCAFile == "" && p.cfg.TLSCertFile == "" {
		return nil
	}
	for _, w := range p.cfg.SSTableLoader {
		switch w {
		case "-ts", "--truststore", "-f", "--conf-path":
			return nil
		}
	}
	return fmt.Errorf("%w: CQL goes over TLS here, but cassandra_sstableloader carries no TLS options for the bulk loader: add -ts TRUSTSTORE -tspw PASSWORD (Java key stores) or -f cassandra.yaml (client_encryption_options); nothing was changed", ErrBadRestore)
}

// streamStaged streams every staged table of each backed-up node this
// node holds. A table that fails does not stop the others (nor, by
// failing the step, the other nodes' streams): the outcome is recorded
// for the report step.
func (p *Plugin) streamStaged(ctx context.Context, staged string, a RestoreAction) error {
	type job struct {
		src string
		t   stagedTable
	}
	var jobs []job
	for _, src := range a.Sources {
		tables, err := stagedTables(filepath.Join(staged, filepath.FromSlash(sourceSub(src))), a.Tables, false)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if !slices.Contains(a.Skip, t.Keyspace+"."+t.Table) { // a view: its base table's writes rebuild it
				jobs = append(jobs, job{src, t})
			}
		}
	}
	// A few loaders at a time: each is a JVM whose start is most of the
	// time of a small table.
	reasons := make([]string, len(jobs))
	var g errgroup.Group
	g.SetLimit(max(1, p.cfg.LoaderJobs))
	for i, j := range jobs {
		g.Go(func() error {
			reasons[i] = p.streamTable(ctx, staged, j.src, j.t)
			return nil
		})
	}
	_ = g.Wait()
	var (
		failed   []TableFailure
		restored []string
		s        *gocql.Session
	)
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	bad := map[string]bool{}
	for i, j := range jobs {
		name := j.t.Keyspace + "." + j.t.Table
		if reasons[i] == "" {
			if !slices.Contains(restored, name) {
				restored = append(restored, name)
			}
			continue
		}
		if s == nil {
			var err error
			if s, err = p.session(ctx); err != nil {
				s = nil
			}
		}
		state := "truncated, streamed in part at most"
		if s != nil {
			state = tableState(ctx, s, j.t.Keyspace, j.t.Table, state)
		}
		failed = append(failed, TableFailure{Table: name + " (from backed-up node " + j.src + ")", Reason: reasons[i], State: state})
		bad[name] = true
	}
	restored = slices.DeleteFunc(restored, func(n string) bool { return bad[n] })
	return p.recordOutcome(staged, tablesOutcome{Failed: failed, Restored: restored})
}

// streamTable streams one staged table with the bulk loader and returns
// why it failed ("" when it streamed). The loader wants the SSTables in
// a directory <keyspace>/<table>: links to the staged files go there
// (not schema.cql, not the secondary index directories, which the
// receiving nodes rebuild).
func (p *Plugin) streamTable(ctx context.Context, staged, src string, t stagedTable) string {
	dir := filepath.Join(staged, "stream", src, t.Keyspace, t.Table)
	// The loader runs as the agent: the links stay the agent's.
	n, err := linkFiles(t.Dir, dir, agentOwner())
	if err != nil {
		return "staging the stream: " + err.Error()
	}
	if n == 0 {
		return "" // an empty table: the truncate made it so
	}
	started := time.Now()
	mark := p.markLog()
	if _, err := p.sstableloader(ctx, dir); err != nil {
		// "Remote peer failed stream session": the receiving node says
		// why in its log; this node's is read (it receives too).
		if entries, logErr := mark.since(); logErr == nil {
			// Loaders run side by side: only what names this table.
			if reasons := errorsIn(entries, t.Keyspace+"."+t.Table, "/"+t.Keyspace+"/"+t.Table+"-"); len(reasons) > 0 {
				return err.Error() + "; this node's Cassandra logged: " + strings.Join(reasons, " / ")
			}
		}
		return err.Error()
	}
	p.log.Info("table streamed", "table", t.Keyspace+"."+t.Table, "from", src, "files", n, "took", time.Since(started).Round(time.Millisecond))
	return ""
}

// sstableloader runs the bulk loader over dir: hosts this node's
// Cassandra first, the CQL port, credentials. The password is on the
// loader's command line (it takes it no other way); it is kept out of
// errors and logs.
func (p *Plugin) sstableloader(ctx context.Context, dir string) (string, error) {
	args := append(slices.Clone(p.cfg.SSTableLoader[1:]), "--no-progress",
		"-d", strings.Join(p.cfg.Hosts, ","), "-p", strconv.Itoa(p.cfg.Port))
	shown := slices.Clone(args)
	if p.cfg.Username != "" {
		args = append(args, "-u", p.cfg.Username, "-pw", p.cfg.Password)
		shown = append(shown, "-u", p.cfg.Username, "-pw", "***")
	}
	args, shown = append(args, dir), append(shown, dir)
	var out strings.Builder
	cmd := exec.CommandContext(ctx, p.cfg.SSTableLoader[0], args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	started := time.Now()
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	p.log.Debug("sstableloader", "args", shown, "took", time.Since(started).Round(time.Millisecond), "err", err)
	if err != nil {
		if ctx.Err() != nil {
			return text, ctx.Err()
		}
		if p.cfg.Password != "" {
			text = strings.ReplaceAll(text, p.cfg.Password, "***")
		}
		return text, fmt.Errorf("%w: %s %s: %v: %s", ErrCommand, p.cfg.SSTableLoader[0], strings.Join(shown, " "), err, javaReason(text, 6))
	}
	return text, nil
}
