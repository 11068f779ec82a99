package cassandra

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// ErrUnavailable marks a Cassandra node that does not answer CQL.
var ErrUnavailable = errors.New("cassandra is not available")

// ErrSchemaDisagreement marks nodes that do not agree on the schema.
var ErrSchemaDisagreement = errors.New("cassandra nodes disagree on the schema")

// systemKeyspaces are Cassandra's own: never created, truncated or
// imported by a restore (a single-node restore puts their files back).
var systemKeyspaces = map[string]bool{
	"system": true, "system_schema": true, "system_auth": true, "system_distributed": true,
	"system_traces": true, "system_views": true, "system_virtual_schema": true,
	"system_cluster_metadata": true,
}

// IsSystemKeyspace reports whether ks belongs to Cassandra itself.
func IsSystemKeyspace(ks string) bool { return systemKeyspaces[ks] }

// session opens a CQL session to this node's Cassandra only (the first
// contact point): no discovery of other hosts, so what it reads from
// system.local is this node.
func (p *Plugin) session(ctx context.Context) (*gocql.Session, error) {
	return p.sessionTo(ctx, p.cfg.Hosts[0])
}

// peerSession opens a session to the first other contact point that
// answers (a node being restored asks the running cluster).
func (p *Plugin) peerSession(ctx context.Context) (*gocql.Session, error) {
	err := fmt.Errorf("%w: no other contact point configured (cassandra_hosts)", ErrUnavailable)
	for _, h := range p.cfg.Hosts[1:] {
		var s *gocql.Session
		if s, err = p.sessionTo(ctx, h); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func (p *Plugin) sessionTo(ctx context.Context, host string) (*gocql.Session, error) {
	c := gocql.NewCluster(host)
	c.Port = p.cfg.Port
	c.ProtoVersion = 4
	c.Timeout = p.cfg.Timeout
	c.ConnectTimeout = p.cfg.Timeout
	c.DisableInitialHostLookup = true
	c.NumConns = 1
	c.Consistency = gocql.LocalOne
	c.ReconnectionPolicy = &gocql.ConstantReconnectionPolicy{MaxRetries: 1, Interval: time.Second}
	if p.cfg.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: p.cfg.Username, Password: p.cfg.Password}
	}
	tlsCfg, err := p.cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("cassandra TLS: %w", err)
	}
	if tlsCfg != nil {
		c.SslOpts = &gocql.SslOptions{Config: tlsCfg, EnableHostVerification: tlsCfg.RootCAs != nil}
	}
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("%w: CQL at %s:%d: %v", ErrUnavailable, host, p.cfg.Port, err)
	}
	return s, nil
}

// LocalNode is this Cassandra node as the ring knows it.
type LocalNode struct {
	HostID        string   `json:"host_id"`
	DataCenter    string   `json:"data_center"`
	Rack          string   `json:"rack"`
	Tokens        []string `json:"tokens"`
	SchemaVersion string   `json:"schema_version"`
	Release       string   `json:"release_version"`
	ClusterName   string   `json:"cluster_name"`
	Partitioner   string   `json:"partitioner"`
}

func localNode(ctx context.Context, s *gocql.Session) (LocalNode, error) {
	var (
		n      LocalNode
		hostID gocql.UUID
		schema gocql.UUID
	)
	err := s.Query(`SELECT host_id, data_center, rack, tokens, schema_version, release_version, cluster_name, partitioner FROM system.local`).
		WithContext(ctx).Scan(&hostID, &n.DataCenter, &n.Rack, &n.Tokens, &schema, &n.Release, &n.ClusterName, &n.Partitioner)
	if err != nil {
		return n, fmt.Errorf("read system.local: %w", err)
	}
	n.HostID, n.SchemaVersion = hostID.String(), schema.String()
	slices.SortFunc(n.Tokens, compareTokens)
	return n, nil
}

// compareTokens orders Murmur3 tokens numerically (they are decimal
// strings); other partitioners' tokens compare as strings.
func compareTokens(a, b string) int {
	na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	switch {
	case na && !nb:
		return -1
	case nb && !na:
		return 1
	case len(a) != len(b):
		if na {
			return len(b) - len(a)
		}
		return len(a) - len(b)
	case na:
		return strings.Compare(b, a)
	}
	return strings.Compare(a, b)
}

// checkSchemaAgreement fails unless every node this one knows reports
// the same schema version as this node.
func checkSchemaAgreement(ctx context.Context, s *gocql.Session, local string) error {
	iter := s.Query(`SELECT peer, schema_version FROM system.peers_v2`).WithContext(ctx).Iter()
	var (
		peer    string
		version gocql.UUID
		differ  []string
	)
	for iter.Scan(&peer, &version) {
		if version.String() != local {
			differ = append(differ, fmt.Sprintf("%s has %s", peer, version))
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("read system.peers_v2: %w", err)
	}
	if len(differ) > 0 {
		return fmt.Errorf("%w: this node has %s, %s", ErrSchemaDisagreement, local, strings.Join(differ, ", "))
	}
	return nil
}

// SchemaItem is one statement of the schema, as Cassandra's DESCRIBE
// SCHEMA returns it (in dependency order: keyspace, types, functions,
// aggregates, tables, indexes, views).
type SchemaItem struct {
	Keyspace string `json:"keyspace"`
	Type     string `json:"type"` // keyspace, type, function, aggregate, table, index, materialized_view
	Name     string `json:"name"`
	CQL      string `json:"cql"`
}

// describeSchema reads every non-system schema statement, with the
// internals the SSTables need (table ids, dropped columns with their drop
// times); a Cassandra that does not know WITH INTERNALS is asked without.
func describeSchema(ctx context.Context, s *gocql.Session) ([]SchemaItem, error) {
	out, err := describe(ctx, s, `DESCRIBE SCHEMA WITH INTERNALS`)
	if err != nil {
		var plainErr error
		if out, plainErr = describe(ctx, s, `DESCRIBE SCHEMA`); plainErr != nil {
			return nil, errors.Join(err, plainErr)
		}
	}
	return out, nil
}

func describe(ctx context.Context, s *gocql.Session, q string) ([]SchemaItem, error) {
	iter := s.Query(q).WithContext(ctx).Iter()
	var (
		out []SchemaItem
		it  SchemaItem
	)
	for iter.Scan(&it.Keyspace, &it.Type, &it.Name, &it.CQL) {
		if !IsSystemKeyspace(it.Keyspace) {
			out = append(out, it)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return out, nil
}

var (
	indexBase = regexp.MustCompile(`(?is)\bON\s+([A-Za-z0-9_."]+)`)
	viewBase  = regexp.MustCompile(`(?is)\bFROM\s+([A-Za-z0-9_."]+)`)
)

// baseTable is the table an index or view statement depends on ("" for
// other kinds).
func (it SchemaItem) baseTable() string {
	var m []string
	switch it.Type {
	case "index":
		m = indexBase.FindStringSubmatch(it.CQL)
	case "materialized_view":
		m = viewBase.FindStringSubmatch(it.CQL)
	}
	if m == nil {
		return ""
	}
	name := strings.ReplaceAll(m[1], `"`, "")
	if _, t, ok := strings.Cut(name, "."); ok {
		return t
	}
	return name
}

// tableIDs reads the ids of the keyspace's tables and views from
// system_schema (the suffix of their data directories).
func tableIDs(ctx context.Context, s *gocql.Session, ks string) (map[string]string, error) {
	out := map[string]string{}
	for _, q := range []string{
		`SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?`,
		`SELECT view_name, id FROM system_schema.views WHERE keyspace_name = ?`,
	} {
		iter := s.Query(q, ks).WithContext(ctx).Iter()
		var (
			name string
			id   gocql.UUID
		)
		for iter.Scan(&name, &id) {
			out[name] = strings.ReplaceAll(id.String(), "-", "")
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read ids of keyspace %s: %w", ks, err)
		}
	}
	return out, nil
}

// schemaIDs lists the ids of every table and view in the running schema
// (lower case, with dashes).
func schemaIDs(ctx context.Context, s *gocql.Session) (map[string]bool, error) {
	out := map[string]bool{}
	for _, q := range []string{`SELECT id FROM system_schema.tables`, `SELECT id FROM system_schema.views`} {
		iter := s.Query(q).WithContext(ctx).Iter()
		var id gocql.UUID
		for iter.Scan(&id) {
			out[id.String()] = true
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read table ids: %w", err)
		}
	}
	return out, nil
}

// awaitSchemaAgreement waits up to limit for every node to report this
// node's schema version.
func awaitSchemaAgreement(ctx context.Context, s *gocql.Session, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n, err := localNode(ctx, s)
		if err != nil {
			return err
		}
		err = checkSchemaAgreement(ctx, s, n.SchemaVersion)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
