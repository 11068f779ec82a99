package cassandra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// The schema a table's SSTables need. An SSTable's header names every
// column it holds data for, including columns dropped since: Cassandra
// reads it only into a table that has each of them as a column or records
// it as dropped (system_schema.dropped_columns). DESCRIBE ... WITH
// INTERNALS gives a table's full history as statements: the CREATE lists
// every column ever added, then ALTER TABLE ... DROP c USING TIMESTAMP t
// for each dropped one and ALTER TABLE ... ADD for one re-added later.

// splitStatements splits CQL text into statements at top-level
// semicolons (not inside quotes, identifiers or $$ function bodies).
func splitStatements(cql string) []string {
	var (
		out   []string
		start int
	)
	for i := 0; i < len(cql); i++ {
		switch c := cql[i]; {
		case c == '\'' || c == '"':
			// '' and "" escape the quote inside a literal.
			for i++; i < len(cql); i++ {
				if cql[i] == c {
					if i+1 < len(cql) && cql[i+1] == c {
						i++
						continue
					}
					break
				}
			}
		case c == '$' && strings.HasPrefix(cql[i:], "$$"):
			if end := strings.Index(cql[i+2:], "$$"); end >= 0 {
				i += end + 3
			} else {
				i = len(cql)
			}
		case c == ';':
			out = appendStatement(out, cql[start:i])
			start = i + 1
		}
	}
	return appendStatement(out, cql[start:])
}

func appendStatement(out []string, s string) []string {
	if s = strings.TrimSpace(s); s != "" {
		out = append(out, s)
	}
	return out
}

var (
	// A table or view is created with its backed-up id when no table of
	// the target has that id (applySchema), else with the id Cassandra
	// gives it.
	withIDAnd  = regexp.MustCompile(`(?is)\bWITH\s+ID\s*=\s*([0-9a-f-]{36})\s+AND\s+`)
	withIDOnly = regexp.MustCompile(`(?is)\s+WITH\s+ID\s*=\s*([0-9a-f-]{36})`)
	// Cassandra's snapshot schema.cql says IF NOT EXISTS; a restore must
	// know whether it created the table (only then do the ALTERs follow).
	ifNotExists = regexp.MustCompile(`(?is)^(CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW|TYPE|INDEX|KEYSPACE))\s+IF\s+NOT\s+EXISTS\b`)
	dropColumn  = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+\S+\s+DROP\s+("(?:[^"]|"")+"|\w+)\s+USING\s+TIMESTAMP\s+(\d+)\s*$`)
	addColumn   = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+\S+\s+ADD\s+("(?:[^"]|"")+"|\w+)\s`)
	createTable = regexp.MustCompile(`(?is)^CREATE\s+TABLE\b`)
)

// statements turns one DESCRIBE item into the statements that recreate
// it: the first creates the object, the rest (dropped and re-added
// columns) apply only to an object that first statement created. The
// CREATE gives no table id.
func (it SchemaItem) statements() []string { return it.statementsWithID(false) }

// statementsWithID is statements, keeping the backed-up table id in the
// CREATE when keepID is set.
func (it SchemaItem) statementsWithID(keepID bool) []string {
	var out []string
	for _, s := range splitStatements(it.CQL) {
		if !keepID {
			s = withIDAnd.ReplaceAllString(s, "WITH ")
			s = withIDOnly.ReplaceAllString(s, "")
		}
		s = ifNotExists.ReplaceAllString(s, "$1")
		out = append(out, s)
	}
	return out
}

// backedUpID is the id a table or view item was backed up with ("" when
// the backup did not record it).
func (it SchemaItem) backedUpID() string {
	if it.Type != "table" && it.Type != "materialized_view" {
		return ""
	}
	stmts := splitStatements(it.CQL)
	if len(stmts) == 0 {
		return ""
	}
	for _, re := range []*regexp.Regexp{withIDAnd, withIDOnly} {
		if m := re.FindStringSubmatch(stmts[0]); m != nil {
			return strings.ToLower(m[1])
		}
	}
	return ""
}

// hasInternals reports whether a table item came from DESCRIBE ... WITH
// INTERNALS (older backups recorded DESCRIBE SCHEMA, without ids or
// dropped columns).
func (it SchemaItem) hasInternals() bool {
	return it.Type != "table" || withIDAnd.MatchString(it.CQL) || withIDOnly.MatchString(it.CQL)
}

// withStagedInternals completes a table item of an older backup from the
// snapshot's own schema.cql (Cassandra writes it with internals) when the
// staged files hold one.
func withStagedInternals(it SchemaItem, staged string) SchemaItem {
	if it.hasInternals() {
		return it
	}
	m, _ := filepath.Glob(filepath.Join(staged, dataPrefix, it.Keyspace, it.Name+"-*", "schema.cql"))
	for _, f := range m {
		if _, _, ok := splitTableDir(filepath.Base(filepath.Dir(f))); !ok {
			continue
		}
		if b, err := os.ReadFile(f); err == nil && createTable.Match(b) {
			it.CQL = string(b)
			return it
		}
	}
	return it
}

// tableColumns is what a table's SSTables may hold: every column ever
// added (name to CQL type) and the dropped ones with their drop times
// (µs; a column added again since is also in Columns).
type tableColumns struct {
	Columns map[string]string
	Dropped map[string]int64
}

// parseTableColumns reads a table item's column list and dropped
// columns.
func parseTableColumns(it SchemaItem) (tableColumns, error) {
	tc := tableColumns{Columns: map[string]string{}, Dropped: map[string]int64{}}
	stmts := it.statements()
	if len(stmts) == 0 || !createTable.MatchString(stmts[0]) {
		return tc, fmt.Errorf("%w: table %s.%s: no CREATE TABLE in the backed-up schema", ErrBadRestore, it.Keyspace, it.Name)
	}
	defs, err := columnDefs(stmts[0])
	if err != nil {
		return tc, fmt.Errorf("%w: table %s.%s: %v", ErrBadRestore, it.Keyspace, it.Name, err)
	}
	for _, d := range defs {
		if strings.HasPrefix(strings.ToUpper(d), "PRIMARY KEY") {
			continue
		}
		name, typ := splitIdent(d)
		typ = strings.TrimSpace(typ)
		for _, suffix := range []string{" PRIMARY KEY", " STATIC"} {
			if strings.HasSuffix(strings.ToUpper(typ), suffix) {
				typ = strings.TrimSpace(typ[:len(typ)-len(suffix)])
			}
		}
		tc.Columns[name] = typ
	}
	for _, s := range stmts[1:] {
		if m := dropColumn.FindStringSubmatch(s); m != nil {
			ts, _ := strconv.ParseInt(m[2], 10, 64)
			name, _ := splitIdent(m[1])
			tc.Dropped[name] = ts
		}

	}
	return tc, nil
}

// columnDefs returns the comma-separated definitions between the CREATE
// TABLE's parentheses.
func columnDefs(create string) ([]string, error) {
	open := strings.IndexByte(create, '(')
	if open < 0 {
		return nil, fmt.Errorf("no column list")
	}
	var (
		out   []string
		depth int
		start = open + 1
		quote byte
	)
	for i := open + 1; i < len(create); i++ {
		c := create[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(' || c == '<':
			depth++
		case c == '>':
			depth--
		case c == ')' && depth == 0:
			return append(out, strings.TrimSpace(create[start:i])), nil
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(create[start:i]))
			start = i + 1
		}
	}
	return nil, fmt.Errorf("unterminated column list")
}

// splitIdent splits a leading CQL identifier (quoted: case kept, ""
// unescaped; unquoted: lower-cased, as Cassandra stores it) from the rest.
func splitIdent(s string) (name, rest string) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, `"`) {
		for i := 1; i < len(s); i++ {
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					i++
					continue
				}
				return strings.ReplaceAll(s[1:i], `""`, `"`), s[i+1:]
			}
		}
	}
	name, rest, _ = strings.Cut(s, " ")
	return strings.ToLower(name), rest
}

// runningColumns reads a running table's (or view's) columns and dropped
// columns from system_schema.
func runningColumns(ctx context.Context, s *gocql.Session, ks, table string) (tableColumns, error) {
	tc := tableColumns{Columns: map[string]string{}, Dropped: map[string]int64{}}
	iter := s.Query(`SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`, ks, table).WithContext(ctx).Iter()
	var name, typ string
	for iter.Scan(&name, &typ) {
		tc.Columns[name] = typ
	}
	if err := iter.Close(); err != nil {
		return tc, fmt.Errorf("read the columns of %s.%s: %w", ks, table, err)
	}
	iter = s.Query(`SELECT column_name, dropped_time FROM system_schema.dropped_columns WHERE keyspace_name = ? AND table_name = ?`, ks, table).WithContext(ctx).Iter()
	var dropped time.Time
	for iter.Scan(&name, &dropped) {
		tc.Dropped[name] = dropped.UnixMicro()
	}
	if err := iter.Close(); err != nil {
		return tc, fmt.Errorf("read the dropped columns of %s.%s: %w", ks, table, err)
	}
	return tc, nil
}

// readableBy lists why SSTables written with the backed-up columns could
// not be read into the running table (none: they can). Every backed-up
// column, dropped ones included, must be a running column of the same
// type or a dropped one.
func (backup tableColumns) readableBy(running tableColumns) []string {
	var out []string
	names := make([]string, 0, len(backup.Columns))
	for n := range backup.Columns {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		typ, live := running.Columns[n]
		_, dropped := running.Dropped[n]
		switch {
		case live && normType(typ) != normType(backup.Columns[n]):
			out = append(out, fmt.Sprintf("column %s is %s in the backup but %s in the running table", n, backup.Columns[n], typ))
		case !live && !dropped:
			if at, ok := backup.Dropped[n]; ok {
				out = append(out, fmt.Sprintf("column %s (dropped in the backup at %d µs) is neither a column nor a dropped column of the running table", n, at))
			} else {
				out = append(out, fmt.Sprintf("column %s of the backup is not in the running table", n))
			}
		case live && backup.Dropped[n] > 0 && !running.droppedSince(n, backup.Dropped[n]):
			out = append(out, fmt.Sprintf("column %s was dropped in the backup at %d µs but the running table has it without that drop: the values the drop hid would come back", n, backup.Dropped[n]))
		}
	}
	return out
}

// droppedSince reports whether the table records column n as dropped at
// or after at (µs; Cassandra keeps drop times to the millisecond).
func (tc tableColumns) droppedSince(n string, at int64) bool {
	d, ok := tc.Dropped[n]
	return ok && d >= at/1000*1000
}

func normType(t string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", `"`, "").Replace(t))
}

// createdMarker lists, in the staging directory's state directory, the
// tables a restore's schema step set out to create: a repeat after a
// crash between a CREATE and its ALTERs finishes the ALTERs on those
// tables (and only on those: an existing table is never altered).
const createdMarker = stateDir + "/schema-created"

// applySchema runs the statements that create what is missing: an item
// whose object already exists is skipped whole (its dropped-column ALTERs
// belong to the object the CREATE would have made) unless this restore
// created it, so a repeat does nothing more. It returns the items
// created.
func applySchema(ctx context.Context, s *gocql.Session, items []SchemaItem, staged string) (created []SchemaItem, err error) {
	marker := filepath.Join(staged, filepath.FromSlash(createdMarker))
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		return nil, err
	}
	ours, _ := readLines(marker)
	inUse, err := schemaIDs(ctx, s)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		key := it.Type + " " + it.Keyspace + "." + it.Name
		// The backed-up id is kept where no table of the target has it:
		// the table keeps its identity (and its directory names). A
		// dropped table's leftovers under that id cannot come back: a
		// table restore truncates before it imports, and a full restore
		// starts from cleared directories.
		id := it.backedUpID()
		stmts := it.statementsWithID(id != "" && !inUse[id])
		resumed := false
		for i, stmt := range stmts {
			if i == 0 && len(stmts) > 1 && !slices.Contains(ours, key) {
				if err := appendLine(marker, key); err != nil {
					return created, err
				}
			}
			if resumed {
				done, err := alterDone(ctx, s, it, stmt)
				if err != nil {
					return created, err
				}
				if done {
					continue
				}
			}
			if err := s.Query(stmt).WithContext(ctx).Consistency(gocql.All).Exec(); err != nil {
				var exists *gocql.RequestErrAlreadyExists
				if i == 0 && (errors.As(err, &exists) || strings.Contains(err.Error(), "already exists")) {
					if resumed = slices.Contains(ours, key); resumed {
						continue
					}
					break
				}
				return created, fmt.Errorf("create %s %s.%s (%s): %w", it.Type, it.Keyspace, it.Name, firstLine(stmt), err)
			}
			if i == 0 {
				created = append(created, it)
			}
		}
	}
	if err := awaitSchemaAgreement(ctx, s, time.Minute); err != nil {
		return created, err
	}
	return created, nil
}

// alterDone reports whether a table already shows the effect of one of
// its recreating ALTERs (a dropped column recorded at its time, an added
// one present).
func alterDone(ctx context.Context, s *gocql.Session, it SchemaItem, stmt string) (bool, error) {
	running, err := runningColumns(ctx, s, it.Keyspace, it.Name)
	if err != nil {
		return false, err
	}
	if m := dropColumn.FindStringSubmatch(stmt); m != nil {
		ts, _ := strconv.ParseInt(m[2], 10, 64)
		name, _ := splitIdent(m[1])
		return running.droppedSince(name, ts), nil
	}
	if m := addColumn.FindStringSubmatch(stmt); m != nil {
		name, _ := splitIdent(m[1])
		_, live := running.Columns[name]
		return live, nil
	}
	return false, nil
}

func appendLine(name, line string) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
