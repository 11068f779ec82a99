package cassandra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
)

// Storage-attached (SAI) indexes and the bulk loader. Cassandra 5.0.9
// refuses a whole SSTable streamed by the loader into a table with an
// SAI index ("Incomplete per-SSTable index build": the receiver checks
// the index components of an entire-SSTable stream, and the loader, in
// client mode, always streams an SSTable whole when one node owns all
// of it — onto a single node, every SSTable). The loader cannot be told
// otherwise (it takes no cassandra.yaml for that). So a restore onto
// another cluster size drops the SAI indexes of the tables it streams,
// right after truncating them (they are empty then), and creates them
// again after the stream, in a phase that runs even when the stream
// failed; Cassandra then builds them from the streamed data, and the
// step waits until they answer queries.

// ActionReindex creates again the SAI indexes a reshaped restore dropped.
const ActionReindex = "reindex"

// saiFile records, in the first node's staging directory, the dropped
// indexes' CREATE statements (DESCRIBE INDEX), for the reindex step and
// for a repeat of the drop.
const saiFile = stateDir + "/sai-indexes.json"

// saiIndex is one dropped index.
type saiIndex struct {
	Keyspace string `json:"keyspace"`
	Table    string `json:"table"`
	Name     string `json:"name"`
	CQL      string `json:"cql"`
}

// dropSAIIndexes drops the running SAI indexes of the backed-up tables
// the selection picks (every one without a selection), after recording
// how to create each again. A repeat keeps what an earlier attempt
// recorded.
func (p *Plugin) dropSAIIndexes(ctx context.Context, staged, dir string, sel Selection) error {
	items, err := readStaged[[]SchemaItem](dir, schemaFile)
	if err != nil {
		return err
	}
	tables := map[string]bool{}
	for _, it := range selectSchema(items, sel) {
		if it.Type == "table" && !IsSystemKeyspace(it.Keyspace) {
			tables[it.Keyspace+"."+it.Name] = true
		}
	}
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	recorded, err := readSAIFile(staged)
	if err != nil {
		return err
	}
	running, err := runningSAIIndexes(ctx, s, tables)
	if err != nil {
		return err
	}
	for _, ix := range running {
		if !slices.ContainsFunc(recorded, func(r saiIndex) bool { return r.Keyspace == ix.Keyspace && r.Name == ix.Name }) {
			recorded = append(recorded, ix)
		}
	}
	if err := writeSAIFile(staged, recorded); err != nil {
		return err
	}
	for _, ix := range running {
		q := fmt.Sprintf("DROP INDEX IF EXISTS %s.%s", quoteIdent(ix.Keyspace), quoteIdent(ix.Name))
		if err := s.Query(q).WithContext(ctx).Consistency(gocql.All).Exec(); err != nil {
			return fmt.Errorf("drop SAI index %s.%s before streaming: %w", ix.Keyspace, ix.Name, err)
		}
		p.log.Info("SAI index dropped for the stream", "index", ix.Keyspace+"."+ix.Name, "table", ix.Table)
	}
	if len(running) > 0 {
		return awaitSchemaAgreement(ctx, s, time.Minute)
	}
	return nil
}

// runningSAIIndexes lists the SAI indexes of the given tables
// (keyspace.table) with their CREATE statements.
func runningSAIIndexes(ctx context.Context, s *gocql.Session, tables map[string]bool) ([]saiIndex, error) {
	var out []saiIndex
	keyspaces := map[string]bool{}
	for t := range tables {
		ks, _, _ := strings.Cut(t, ".")
		keyspaces[ks] = true
	}
	for _, ks := range slices.Sorted(maps.Keys(keyspaces)) {
		iter := s.Query(`SELECT table_name, index_name, options FROM system_schema.indexes WHERE keyspace_name = ?`, ks).WithContext(ctx).Iter()
		var (
			table, name string
			options     map[string]string
		)
		for iter.Scan(&table, &name, &options) {
			if tables[ks+"."+table] && isSAI(options["class_name"]) {
				out = append(out, saiIndex{Keyspace: ks, Table: table, Name: name})
			}
			options = nil
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read the indexes of keyspace %s: %w", ks, err)
		}
	}
	for i, ix := range out {
		var cql string
		q := fmt.Sprintf("DESCRIBE INDEX %s.%s", quoteIdent(ix.Keyspace), quoteIdent(ix.Name))
		m := map[string]any{}
		if err := s.Query(q).WithContext(ctx).MapScan(m); err != nil {
			return nil, fmt.Errorf("describe SAI index %s.%s: %w", ix.Keyspace, ix.Name, err)
		}
		cql, _ = m["create_statement"].(string)
		if cql == "" {
			return nil, fmt.Errorf("describe SAI index %s.%s: no create_statement", ix.Keyspace, ix.Name)
		}
		out[i].CQL = strings.TrimSuffix(strings.TrimSpace(cql), ";")
	}
	return out, nil
}

func isSAI(class string) bool {
	return strings.HasSuffix(class, "StorageAttachedIndex") || strings.EqualFold(class, "sai")
}

// recreateSAIIndexes creates the recorded indexes again (those that
// exist are kept) and waits until Cassandra has built them.
func (p *Plugin) recreateSAIIndexes(ctx context.Context, staged string) error {
	recorded, err := readSAIFile(staged)
	if err != nil || len(recorded) == 0 {
		return err
	}
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, ix := range recorded {
		q := ifNotExistsIndex(ix.CQL)
		if err := s.Query(q).WithContext(ctx).Consistency(gocql.All).Exec(); err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("create SAI index %s.%s again after the stream (%s): %w", ix.Keyspace, ix.Name, firstLine(q), err)
		}
	}
	if err := awaitSchemaAgreement(ctx, s, time.Minute); err != nil {
		return err
	}
	started := time.Now()
	for _, ix := range recorded {
		if err := awaitSAIQueryable(ctx, s, ix, 10*time.Minute); err != nil {
			return err
		}
	}
	p.log.Info("SAI indexes created again and built", "indexes", len(recorded), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// ifNotExistsIndex makes a DESCRIBE INDEX statement repeatable.
func ifNotExistsIndex(cql string) string {
	for _, prefix := range []string{"CREATE CUSTOM INDEX ", "CREATE INDEX "} {
		if rest, ok := strings.CutPrefix(cql, prefix); ok && !strings.HasPrefix(strings.ToUpper(rest), "IF NOT EXISTS") {
			return prefix + "IF NOT EXISTS " + rest
		}
	}
	return cql
}

// awaitSAIQueryable waits until the node reports the index queryable
// (system_views.sai_column_indexes: Cassandra builds a new index in the
// background).
func awaitSAIQueryable(ctx context.Context, s *gocql.Session, ix saiIndex, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var queryable bool
		err := s.Query(`SELECT is_queryable FROM system_views.sai_column_indexes WHERE keyspace_name = ? AND index_name = ?`,
			ix.Keyspace, ix.Name).WithContext(ctx).Consistency(gocql.One).Scan(&queryable)
		if err == nil && queryable {
			return nil
		}
		if err != nil && !errors.Is(err, gocql.ErrNotFound) {
			return fmt.Errorf("SAI index %s.%s: is it built? %w", ix.Keyspace, ix.Name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("SAI index %s.%s not queryable %s after it was created again", ix.Keyspace, ix.Name, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readSAIFile(staged string) ([]saiIndex, error) {
	b, err := os.ReadFile(filepath.Join(staged, filepath.FromSlash(saiFile)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []saiIndex
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", saiFile, err)
	}
	return out, nil
}

func writeSAIFile(staged string, ixs []saiIndex) error {
	name := filepath.Join(staged, filepath.FromSlash(saiFile))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(ixs)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomicMode(name, b, 0o644)
}
