package cassandra

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gocql/gocql"
)

// load puts every backed-up user table into the (restarted) node under
// its new id, then confirms that Cassandra loaded each table's SSTables.
// The tables are checked against the schema they go into before the node
// is stopped.
func (p *Plugin) load(ctx context.Context, staged string, a RestoreAction) error {
	tables, err := stagedTables(staged, nil, false)
	if err != nil {
		return err
	}
	if err := p.checkAgainstRunning(ctx, staged, nil); err != nil {
		return err
	}
	dirs, err := p.newTableDirs(ctx, tables)
	if err != nil {
		return err
	}
	owner, err := p.restoreOwner()
	if err != nil {
		return err
	}
	var env []string
	if a.ToTime != nil {
		// What the empty node wrote (the schema) goes into SSTables now,
		// so its own segments need no replay.
		if _, err := p.nodetool(ctx, "flush"); err != nil {
			return fmt.Errorf("nodetool flush: %w", err)
		}
		if env, err = p.pitrBeforeStart(ctx, staged, a); err != nil {
			return err
		}
	}
	if err := p.stop(ctx); err != nil {
		return err
	}
	for i, t := range tables {
		// Each table goes to one data directory, round robin; Cassandra
		// reads a table's SSTables from any of them.
		dd := p.cfg.DataDirs[i%len(p.cfg.DataDirs)]
		if err := p.clearTable(t.Keyspace, dirs[t]); err != nil {
			return err
		}
		if err := linkTree(t.Dir, filepath.Join(dd, t.Keyspace, dirs[t]), owner); err != nil {
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
	return p.recordOutcome(staged, p.confirmLoaded(ctx, s, mark, tables, dirs))
}

// confirmLoaded names every table whose SSTables Cassandra logged as
// failed or corrupt since mark (it skips a corrupt SSTable at start-up
// and serves the table without it), or that cannot be read; the others
// are restored.
func (p *Plugin) confirmLoaded(ctx context.Context, s *gocql.Session, mark logMark, tables []stagedTable, dirs map[stagedTable]string) tablesOutcome {
	const done = "files in place, not loaded by Cassandra"
	entries, err := mark.since()
	if err != nil {
		p.log.Warn("cannot read cassandra's system.log to confirm the restored SSTables", "err", err)
	}
	var (
		failed   []TableFailure
		restored []string
	)
	for _, t := range tables {
		name := t.Keyspace + "." + t.Table
		reasons := problemsWith(entries, tableNeedle(t.Keyspace, dirs[t]))
		if len(reasons) == 0 {
			if err := readOne(ctx, s, t); err != nil {
				reasons = []string{err.Error()}
			}
		}
		if len(reasons) > 0 {
			failed = append(failed, TableFailure{Table: name, Reason: strings.Join(reasons, " / "), State: tableState(ctx, s, t.Keyspace, t.Table, done)})
			continue
		}
		restored = append(restored, name)
	}
	return tablesOutcome{Failed: failed, Restored: restored}
}

// readOne reads one row of a table through this node.
func readOne(ctx context.Context, s *gocql.Session, t stagedTable) error {
	q := fmt.Sprintf("SELECT * FROM %s.%s LIMIT 1", quoteIdent(t.Keyspace), quoteIdent(t.Table))
	if err := s.Query(q).WithContext(ctx).Consistency(gocql.One).Exec(); err != nil {
		return fmt.Errorf("read %s.%s after the restore: %w", t.Keyspace, t.Table, err)
	}
	return nil
}

// importTables loads the selected tables' staged files into the running
// node with nodetool import (which verifies them and rebuilds indexes).
// A table that fails does not stop the others, and does not fail the step
// either (that would cancel the other nodes' imports): the report step
// that follows fails naming it, Cassandra's reason and what the table
// holds.
func (p *Plugin) importTables(ctx context.Context, staged string, sel Selection) error {
	tables, err := stagedTables(staged, sel, false)
	if err != nil {
		return err
	}
	dirs, err := p.newTableDirs(ctx, tables)
	if err != nil {
		return err
	}
	owner, err := p.restoreOwner()
	if err != nil {
		return err
	}
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var (
		failed   []TableFailure
		restored []string
	)
	for _, t := range tables {
		name := t.Keyspace + "." + t.Table
		if reason := p.importTable(ctx, staged, t, dirs[t], owner); reason != "" {
			failed = append(failed, TableFailure{Table: name, Reason: reason, State: tableState(ctx, s, t.Keyspace, t.Table, "truncated")})
			continue
		}
		if err := readOne(ctx, s, t); err != nil {
			failed = append(failed, TableFailure{Table: name, Reason: err.Error(), State: tableState(ctx, s, t.Keyspace, t.Table, "truncated")})
			continue
		}
		restored = append(restored, name)
	}
	return p.recordOutcome(staged, tablesOutcome{Failed: failed, Restored: restored})
}

// importTable imports one table's staged files and returns why it failed
// ("" when Cassandra loaded them all): Cassandra's log lines about the
// table since the import began, else nodetool's own output.
func (p *Plugin) importTable(ctx context.Context, staged string, t stagedTable, dir string, owner fileOwner) string {
	// nodetool import moves the files it loads: give it links in a
	// directory of its own, so the staged copy survives a repeat.
	in := filepath.Join(staged, "import", t.Keyspace, dir)
	n, err := linkFiles(t.Dir, in, owner)
	if err != nil {
		return "staging the import: " + err.Error()
	}
	if n == 0 {
		return "" // an empty table: the truncate already made it so
	}
	mark := p.markLog()
	out, err := p.nodetool(ctx, "import", t.Keyspace, t.Table, in)
	if err == nil && strings.Contains(out, "failed") {
		err = fmt.Errorf("%s", out)
	}
	entries, logErr := mark.since()
	if logErr != nil {
		p.log.Warn("cannot read cassandra's system.log to confirm the import", "err", logErr)
	}
	reasons := problemsWith(entries, tableNeedle(t.Keyspace, dir))
	switch {
	case len(reasons) > 0:
		return strings.Join(reasons, " / ")
	case err != nil:
		return fmt.Sprintf("nodetool import: %v", err)
	}
	p.log.Info("table imported", "table", t.Keyspace+"."+t.Table, "files", n)
	return ""
}

// linkFiles links the regular files of src (not schema.cql) into a new
// directory dst, both given to o (Cassandra moves them from there), and
// counts them.
func linkFiles(src, dst string, o fileOwner) (int, error) {
	if err := os.RemoveAll(dst); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	if err := o.chown(dst); err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != "schema.cql" {
			if err := linkOrCopy(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return n, err
			}
			if err := o.chown(filepath.Join(dst, e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
