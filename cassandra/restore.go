package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// Restore actions. A full restore runs stage (every node), reset (every
// node), start (the first node, then the others), schema (one node) and
// load (every node); a single-node restore runs node; a table restore runs
// stage, schema (one node), check (every node), truncate (one node) and
// import: nothing is truncated before every node has its files staged and
// checked against the schema they go into. Every action can be repeated
// after a crash.
const (
	ActionStage    = "stage"    // download and check the files, while Cassandra still serves
	ActionReset    = "reset"    // stop, clear, write the backed-up tokens into the override
	ActionStart    = "start"    // start empty with the override (no bootstrap)
	ActionSchema   = "schema"   // create what the schema lacks, dropped columns included
	ActionCheck    = "check"    // the staged tables' columns are readable by the running tables
	ActionTruncate = "truncate" // truncate the selected tables (table restores)
	ActionLoad     = "load"     // stop, put every user table's files in place by new table id, start, confirm
	ActionImport   = "import"   // nodetool import of the selected tables into the running node, confirm
	ActionNode     = "node"     // stop, clear, put every file back as it was (system keyspaces too), start
	ActionReport   = "report"   // fail naming the tables this node's load, import or stream could not restore
)

// RestoreAction is the plugin part of one restore step.
type RestoreAction struct {
	Action string `json:"action"`
	// Tables selects keyspace.table patterns (table restores only).
	Tables Selection `json:"tables,omitempty"`
	// A restore onto a cluster of another size (stream.go): Source is
	// the backed-up node whose files a stage action stages (in its own
	// subdirectory), Sources the backed-up nodes a node has staged, Skip
	// the views (keyspace.view), neither staged nor streamed.
	Source  string   `json:"source,omitempty"`
	Sources []string `json:"sources,omitempty"`
	Skip    []string `json:"skip,omitempty"`
	// A restore to a time (pitr.go): the segments a segments action
	// stages, or a load action replays up to ToTime, in the Keyspaces
	// backed up.
	Segments  []string   `json:"segments,omitempty"`
	ToTime    *time.Time `json:"to_time,omitempty"`
	Keyspaces []string   `json:"keyspaces,omitempty"`
}

// stateDir holds, in the staging directory, what a restore records for
// its own repeats (never a backed-up path: the backed-up tree has
// cassandra/ and data/ only).
const stateDir = ".crayfish"

// ErrBadRestore marks a restore that cannot work with this backup.
var ErrBadRestore = errors.New("invalid cassandra restore")

// StageFilter says which backed-up paths an action needs downloaded
// (include and exclude patterns of the node's tree filter); none when
// needed is false.
func StageFilter(a RestoreAction) (include, exclude []string, needed bool) {
	if a.reshaped() {
		return reshapeFilter(a)
	}
	switch a.Action {
	case ActionStage, ActionSchema, ActionCheck, ActionTruncate, ActionLoad, ActionImport:
		if len(a.Tables) > 0 {
			include = []string{"cassandra/**"}
			for _, p := range a.Tables {
				ks, t, _ := strings.Cut(p, ".")
				include = append(include, dataPrefix+"/"+ks+"/"+t+"-*")
			}
			return include, nil, true
		}
		for ks := range systemKeyspaces {
			exclude = append(exclude, dataPrefix+"/"+ks)
		}
		slices.Sort(exclude)
		// The restore's own state is not the backup's: a download keeps it.
		// Archived commit-log segments are staged only by a restore to a
		// time, and only those it replays (ActionSegments).
		return nil, append(exclude, stateDir, commitlogPrefix), true
	case ActionNode:
		// The restore's own state (a restore to a time's staged
		// segments) is kept, as by the other stages.
		return nil, []string{stateDir, commitlogPrefix}, true
	case ActionSegments:
		for _, s := range a.Segments {
			include = append(include, commitlogPrefix+"/"+s)
		}
		return include, nil, len(include) > 0
	}
	return nil, nil, false
}

// Restore performs action a with the files staged under staged (a tree
// restored from the backed-up node src).
func (p *Plugin) Restore(ctx context.Context, staged string, a RestoreAction, src NodeMeta) error {
	if a.reshaped() {
		return p.restoreReshaped(ctx, staged, a)
	}
	switch a.Action {
	case ActionStage:
		return p.checkStaged(staged, a.Tables)
	case ActionReset:
		return p.reset(ctx, src)
	case ActionStart:
		return p.start(ctx)
	case ActionSchema:
		return p.restoreSchema(ctx, staged, a.Tables)
	case ActionCheck:
		return p.checkAgainstRunning(ctx, staged, a.Tables)
	case ActionTruncate:
		return p.truncateTables(ctx, staged, a.Tables)
	case ActionLoad:
		return p.load(ctx, staged, a)
	case ActionSegments:
		return checkSegments(staged, a.Segments)
	case ActionReplay:
		return p.replayTables(ctx, staged, a)
	case ActionImport:
		return p.importTables(ctx, staged, a.Tables)
	case ActionNode:
		return p.restoreNode(ctx, staged, a, src)
	case ActionReport:
		return reportOutcome(staged)
	}
	return fmt.Errorf("%w: unknown action %q", ErrBadRestore, a.Action)
}

// clear removes everything Cassandra keeps on this node: the data
// directories' contents, commit log, saved caches and hints.
func (p *Plugin) clear() error {
	dirs := slices.Clone(p.cfg.DataDirs)
	for _, d := range []string{p.cfg.CommitlogDir, p.cfg.SavedCachesDir, p.cfg.HintsDir} {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := emptyDir(d, nil); err != nil {
			return err
		}
	}
	return nil
}

// emptyDir removes what d holds except the names keep spares; a missing d
// is empty.
func emptyDir(d string, keep func(name string) bool) error {
	entries, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if keep != nil && keep(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// reset stops Cassandra, clears the node and writes the backed-up node's
// tokens into the override the next start applies (no bootstrap: the data
// comes from the backup). Every node is reset before any starts: a node
// that came back empty next to a running old one would clash with it.
func (p *Plugin) reset(ctx context.Context, src NodeMeta) error {
	if len(src.Tokens) == 0 {
		return fmt.Errorf("%w: the backed-up node %s has no tokens recorded", ErrBadRestore, src.HostID)
	}
	if p.cfg.OverrideFile == "" {
		return fmt.Errorf("%w: no cassandra override file configured", ErrBadRestore)
	}
	if err := p.stop(ctx); err != nil {
		return err
	}
	if err := p.clear(); err != nil {
		return fmt.Errorf("clear cassandra data: %w", err)
	}
	if err := p.retireSpool(); err != nil {
		return fmt.Errorf("move the commit-log spool aside: %w", err)
	}
	return p.writeOverride(src)
}

// writeOverride records the backed-up node's tokens for every later start
// (Cassandra refuses to start when num_tokens differs from the tokens it
// saved, so the override stays after the restore).
func (p *Plugin) writeOverride(src NodeMeta) error {
	override := fmt.Sprintf("# written by crayfish: restore of host %s\nnum_tokens: %d\ninitial_token: %s\nauto_bootstrap: false\n",
		src.HostID, len(src.Tokens), strings.Join(src.Tokens, ","))
	return os.WriteFile(p.cfg.OverrideFile, []byte(override), 0o644)
}

func readStaged[T any](staged, name string) (T, error) {
	var v T
	b, err := os.ReadFile(filepath.Join(staged, filepath.FromSlash(name)))
	if err != nil {
		return v, fmt.Errorf("%w: the backup lacks %s: %v", ErrBadRestore, name, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%w: %s: %v", ErrBadRestore, name, err)
	}
	return v, nil
}

// restoreSchema creates what the running cluster lacks of the backed-up
// schema (all of it, or what the selected tables need: their keyspaces,
// types, functions, the tables, their indexes and views), with each
// created table's dropped columns and their drop times, so that SSTables
// written before a drop read back. Existing objects are kept as they are
// (the check step decides whether the files fit them).
func (p *Plugin) restoreSchema(ctx context.Context, staged string, sel Selection) error {
	items, err := backupSchema(staged)
	if err != nil {
		return err
	}
	chosen := selectSchema(items, sel)
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	created, err := applySchema(ctx, s, chosen, staged)
	if err != nil {
		return err
	}
	p.log.Info("schema restored", "items", len(chosen), "created", len(created))
	return nil
}

// backupSchema reads the backed-up schema; a table recorded without
// internals (an older backup) takes them from its snapshot's schema.cql.
func backupSchema(staged string) ([]SchemaItem, error) {
	items, err := readStaged[[]SchemaItem](staged, schemaFile)
	if err != nil {
		return nil, err
	}
	for i := range items {
		items[i] = withStagedInternals(items[i], staged)
	}
	return items, nil
}

// selectSchema keeps what the selection needs: all of it without one;
// otherwise the selected tables, their views and indexes, preceded by
// their keyspaces' keyspace, types, functions and aggregates (DESCRIBE's
// order is kept within each group).
func selectSchema(items []SchemaItem, sel Selection) []SchemaItem {
	if len(sel) == 0 {
		return items
	}
	var chosen []SchemaItem
	keyspaces := map[string]bool{}
	for _, it := range items {
		switch it.Type {
		case "table", "materialized_view":
			if sel.Match(it.Keyspace, it.Name) || (it.Type == "materialized_view" && sel.Match(it.Keyspace, it.baseTable())) {
				chosen, keyspaces[it.Keyspace] = append(chosen, it), true
			}
		case "index":
			if sel.Match(it.Keyspace, it.baseTable()) {
				chosen = append(chosen, it)
			}
		}
	}
	var deps []SchemaItem
	for _, it := range items {
		if keyspaces[it.Keyspace] && it.Type != "table" && it.Type != "materialized_view" && it.Type != "index" {
			deps = append(deps, it)
		}
	}
	return append(deps, chosen...)
}

// truncateTables empties the selected tables (consistency ALL), so the
// import that follows leaves them exactly as backed up. It runs only
// after every node has staged and checked its files.
func (p *Plugin) truncateTables(ctx context.Context, staged string, sel Selection) error {
	if len(sel) == 0 {
		return fmt.Errorf("%w: truncate needs a table selection", ErrBadRestore)
	}
	return p.truncateBackedUp(ctx, staged, sel)
}

// truncateBackedUp empties the backed-up user tables the selection
// picks, every one without a selection (consistency ALL). Views follow
// their base tables.
func (p *Plugin) truncateBackedUp(ctx context.Context, staged string, sel Selection) error {
	items, err := readStaged[[]SchemaItem](staged, schemaFile)
	if err != nil {
		return err
	}
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, it := range selectSchema(items, sel) {
		if it.Type != "table" || IsSystemKeyspace(it.Keyspace) {
			continue
		}
		q := fmt.Sprintf("TRUNCATE %s.%s", quoteIdent(it.Keyspace), quoteIdent(it.Name))
		if err := s.Query(q).WithContext(ctx).Consistency(gocql.All).Exec(); err != nil {
			return fmt.Errorf("truncate %s.%s: %w", it.Keyspace, it.Name, err)
		}
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// stagedTable is one backed-up table directory in the staging tree.
type stagedTable struct {
	Keyspace, Table, OldID string
	Dir                    string // staged directory
}

func stagedTables(staged string, sel Selection, withSystem bool) ([]stagedTable, error) {
	var out []stagedTable
	ksDirs, err := os.ReadDir(filepath.Join(staged, dataPrefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	for _, ks := range ksDirs {
		if !ks.IsDir() || (IsSystemKeyspace(ks.Name()) && !withSystem) {
			continue
		}
		tds, err := os.ReadDir(filepath.Join(staged, dataPrefix, ks.Name()))
		if err != nil {
			return nil, err
		}
		for _, td := range tds {
			t, id, ok := splitTableDir(td.Name())
			if !ok || !td.IsDir() || (len(sel) > 0 && !sel.Match(ks.Name(), t)) {
				continue
			}
			out = append(out, stagedTable{Keyspace: ks.Name(), Table: t, OldID: id, Dir: filepath.Join(staged, dataPrefix, ks.Name(), td.Name())})
		}
	}
	return out, nil
}

// newTableDirs maps each staged table to its directory name in the
// running schema, read from system_schema (the table was created anew,
// so its id differs from the backed-up one).
func (p *Plugin) newTableDirs(ctx context.Context, tables []stagedTable) (map[stagedTable]string, error) {
	s, err := p.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	ids := map[string]map[string]string{}
	out := map[stagedTable]string{}
	for _, t := range tables {
		if ids[t.Keyspace] == nil {
			if ids[t.Keyspace], err = tableIDs(ctx, s, t.Keyspace); err != nil {
				return nil, err
			}
		}
		id, ok := ids[t.Keyspace][t.Table]
		if !ok {
			return nil, fmt.Errorf("%w: table %s.%s is not in the running schema", ErrBadRestore, t.Keyspace, t.Table)
		}
		out[t] = t.Table + "-" + id
	}
	return out, nil
}

// clearTable removes a table's live files (not its snapshots or backups
// directories) in every data directory.
func (p *Plugin) clearTable(ks, dir string) error {
	for _, dd := range p.cfg.DataDirs {
		err := emptyDir(filepath.Join(dd, ks, dir), func(name string) bool { return name == "snapshots" || name == "backups" })
		if err != nil {
			return err
		}
	}
	return nil
}

// linkTree hard-links (or copies, across file systems) every file below
// src into dst, keeping the staged files for a repeat, and gives what it
// creates to o. schema.cql is Cassandra's note of the table's schema in
// a snapshot, not table data.
func linkTree(src, dst string, o fileOwner) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return o.mkdirAll(target)
		}
		if rel == "schema.cql" {
			return nil
		}
		_ = os.Remove(target)
		if err := linkOrCopy(p, target); err != nil {
			return err
		}
		return o.chown(target)
	})
}

// linkOrCopy hard-links src to dst, or copies it across file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// restoreNode puts a whole node back as it was backed up, system
// keyspaces included, so it comes back with its host id and tokens while
// the rest of the cluster keeps running. A user table that the running
// cluster has recreated since the backup (another id) gets the files in
// its new directory: the node learns the current schema from its peers
// and loads them there. With a.ToTime the node then replays its own
// archived commit log up to the time at its start (a single-node
// restore to a time, pitr.go).
func (p *Plugin) restoreNode(ctx context.Context, staged string, a RestoreAction, src NodeMeta) error {
	tables, err := stagedTables(staged, nil, true)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("%w: the backup holds no table files for this node", ErrBadRestore)
	}
	dirs := map[stagedTable]string{}
	for _, t := range tables {
		dirs[t] = t.Table + "-" + t.OldID
	}
	if err := p.checkStagedTables(tables); err != nil {
		return err
	}
	if err := p.currentTableDirs(ctx, staged, tables, dirs); err != nil {
		return err
	}
	owner, err := p.restoreOwner()
	if err != nil {
		return err
	}
	if err := p.stop(ctx); err != nil {
		return err
	}
	if err := p.clear(); err != nil {
		return fmt.Errorf("clear cassandra data: %w", err)
	}
	if p.cfg.OverrideFile != "" && len(src.Tokens) > 0 {
		// The restored system keyspace carries the tokens; the override
		// keeps num_tokens in line with them.
		if err := p.writeOverride(src); err != nil {
			return err
		}
	}
	for i, t := range tables {
		dd := p.cfg.DataDirs[i%len(p.cfg.DataDirs)]
		if err := linkTree(t.Dir, filepath.Join(dd, t.Keyspace, dirs[t]), owner); err != nil {
			return err
		}
	}
	var env []string
	if a.ToTime != nil {
		if env, err = p.pitrBeforeStart(ctx, staged, a); err != nil {
			return err
		}
	}
	mark := p.markLog()
	if err := p.start(ctx, env...); err != nil {
		return err
	}
	if a.ToTime != nil {
		if err := p.pitrAfterStart(staged, a, mark); err != nil {
			return err
		}
	}
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	now, err := localNode(ctx, s)
	if err != nil {
		return err
	}
	if src.HostID != "" && now.HostID != src.HostID {
		return fmt.Errorf("the restored node came back as host %s, not the backed-up %s", now.HostID, src.HostID)
	}
	// The node's schema is the backed-up one until it has merged the
	// cluster's: wait for agreement before calling it restored.
	if err := awaitSchemaAgreement(ctx, s, 3*time.Minute); err != nil {
		return fmt.Errorf("the restored node did not agree with the cluster on the schema: %w", err)
	}
	// Its restored system.peers_v2 may still show the peers' old versions:
	// also ask a running peer for its own.
	if peer, err := p.peerSession(ctx); err == nil {
		defer peer.Close()
		for deadline := time.Now().Add(3 * time.Minute); ; {
			mine, err1 := localNode(ctx, s)
			theirs, err2 := localNode(ctx, peer)
			if err1 == nil && err2 == nil && mine.SchemaVersion == theirs.SchemaVersion {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: the restored node's schema %s never matched its peer's %s", ErrSchemaDisagreement, mine.SchemaVersion, theirs.SchemaVersion)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	var user []stagedTable
	for _, t := range tables {
		if !IsSystemKeyspace(t.Keyspace) {
			user = append(user, t)
		}
	}
	return p.confirmLoaded(ctx, s, mark, user, dirs).err()
}
