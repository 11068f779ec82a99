package cassandra

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Checks a restore makes before it changes anything: the staged files are
// whole (every component an SSTable's TOC lists is there, Data.db matches
// its digest) and the tables they go into can read them.

// checkStaged checks this node's staged files of the selected tables
// (all user tables without a selection) and names every problem.
func (p *Plugin) checkStaged(staged string, sel Selection) error {
	tables, err := stagedTables(staged, sel, false)
	if err != nil {
		return err
	}
	return p.checkStagedTables(tables)
}

func (p *Plugin) checkStagedTables(tables []stagedTable) error {
	started := time.Now()
	var problems []string
	for _, t := range tables {
		for _, pr := range checkSSTables(t.Dir) {
			problems = append(problems, fmt.Sprintf("%s.%s: %s", t.Keyspace, t.Table, pr))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: damaged staged files, nothing was changed: %s", ErrBadRestore, strings.Join(problems, "; "))
	}
	p.log.Info("staged files checked", "tables", len(tables), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// checkSSTables checks the SSTables in one table directory (secondary
// index directories below it are Cassandra's to rebuild).
func checkSSTables(dir string) []string {
	tocs, _ := filepath.Glob(filepath.Join(dir, "*-TOC.txt"))
	var out []string
	for _, toc := range tocs {
		prefix := strings.TrimSuffix(toc, "TOC.txt")
		comps, err := readLines(toc)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		for _, c := range comps {
			if _, err := os.Stat(prefix + c); err != nil {
				out = append(out, fmt.Sprintf("%s lists %s, which is missing", filepath.Base(toc), c))
			}
		}
		if err := checkDigest(prefix+"Data.db", prefix+"Digest.crc32"); err != nil {
			out = append(out, err.Error())
		}
	}
	return out
}

func readLines(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// checkDigest compares Data.db with the CRC32 Cassandra wrote beside it
// (the check nodetool import's verification makes; a load at start-up
// does not make it). No digest file: nothing to compare.
func checkDigest(data, digest string) error {
	want, err := os.ReadFile(digest)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	sum, err := strconv.ParseUint(strings.TrimSpace(string(want)), 10, 32)
	if err != nil {
		return fmt.Errorf("%s: %q is not a CRC32", filepath.Base(digest), want)
	}
	f, err := os.Open(data)
	if err != nil {
		return err
	}
	defer f.Close()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := h.Sum32(); got != uint32(sum) {
		return fmt.Errorf("%s does not match its digest (crc32 %d, recorded %d)", filepath.Base(data), got, sum)
	}
	return nil
}

// checkAgainstRunning checks that the running tables can read the staged
// SSTables: every column the backup's table had, dropped ones included,
// is a column of the same type or a dropped column of the running table.
// It names every mismatch; nothing has been truncated yet.
func (p *Plugin) checkAgainstRunning(ctx context.Context, staged string, sel Selection) error {
	problems, err := p.schemaProblems(ctx, staged, sel)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: the running schema cannot read the backed-up SSTables, nothing was truncated: %s", ErrBadRestore, strings.Join(problems, "; "))
	}
	return nil
}

// schemaProblems lists, per staged table, why the running table could
// not read its files.
func (p *Plugin) schemaProblems(ctx context.Context, staged string, sel Selection) ([]string, error) {
	tables, err := stagedTables(staged, sel, false)
	if err != nil {
		return nil, err
	}
	items, err := backupSchema(staged)
	if err != nil {
		return nil, err
	}
	byName := map[string]SchemaItem{}
	for _, it := range items {
		if it.Type == "table" {
			byName[it.Keyspace+"."+it.Name] = it
		}
	}
	s, err := p.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var problems []string
	for _, t := range tables {
		name := t.Keyspace + "." + t.Table
		it, ok := byName[name]
		if !ok {
			continue // a view: its columns are its base table's
		}
		want, err := parseTableColumns(it)
		if err != nil {
			return nil, err
		}
		have, err := runningColumns(ctx, s, t.Keyspace, t.Table)
		if err != nil {
			return nil, err
		}
		if len(have.Columns) == 0 {
			problems = append(problems, name+": not in the running schema")
			continue
		}
		for _, pr := range want.readableBy(have) {
			problems = append(problems, name+": "+pr)
		}
	}
	return problems, nil
}

// currentTableDirs points each user table that the running cluster has
// recreated since the backup (another id, read from a running peer) at
// its current directory, and checks that the recreated table can read
// the backed-up files before the node is stopped. Without a running peer
// the backed-up ids stay.
func (p *Plugin) currentTableDirs(ctx context.Context, staged string, tables []stagedTable, dirs map[stagedTable]string) error {
	peer, err := p.peerSession(ctx)
	if err != nil {
		p.log.Warn("no running peer to read the current table ids from; restoring the backed-up ids", "err", err)
		return nil
	}
	defer peer.Close()
	items, err := backupSchema(staged)
	if err != nil {
		return err
	}
	byName := map[string]SchemaItem{}
	for _, it := range items {
		if it.Type == "table" {
			byName[it.Keyspace+"."+it.Name] = it
		}
	}
	ids := map[string]map[string]string{}
	var problems []string
	for _, t := range tables {
		if IsSystemKeyspace(t.Keyspace) {
			continue
		}
		if ids[t.Keyspace] == nil {
			if ids[t.Keyspace], err = tableIDs(ctx, peer, t.Keyspace); err != nil {
				return err
			}
		}
		id, ok := ids[t.Keyspace][t.Table]
		if !ok || id == t.OldID {
			continue
		}
		dirs[t] = t.Table + "-" + id
		it, ok := byName[t.Keyspace+"."+t.Table]
		if !ok {
			continue // a view
		}
		want, err := parseTableColumns(it)
		if err != nil {
			return err
		}
		have, err := runningColumns(ctx, peer, t.Keyspace, t.Table)
		if err != nil {
			return err
		}
		for _, pr := range want.readableBy(have) {
			problems = append(problems, fmt.Sprintf("%s.%s (recreated since the backup): %s", t.Keyspace, t.Table, pr))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: the running schema cannot read the backed-up SSTables, the node was not stopped: %s", ErrBadRestore, strings.Join(problems, "; "))
	}
	return nil
}
