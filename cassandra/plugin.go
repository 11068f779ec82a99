package cassandra

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
)

// Name is the plugin's name in manifests and configuration.
const Name = "cassandra"

// Plugin is one node's Cassandra.
type Plugin struct {
	cfg Config
	log *slog.Logger
}

// New returns the plugin for cfg.
func New(cfg Config, log *slog.Logger) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Plugin{cfg: cfg.withDefaults(), log: log.With("plugin", Name)}, nil
}

// Name is "cassandra".
func (p *Plugin) Name() string { return Name }

// Layout of the tree a snapshot hands to the node (and a restore gets
// back): the node's identity and the schema as JSON, and every table's
// snapshot files under data/<keyspace>/<table>-<id>/ (JBOD directories
// merged; the id is the one the table had when it was backed up).
const (
	nodeFile   = "cassandra/node.json"
	schemaFile = "cassandra/schema.json"
	dataPrefix = "data"
)

// NodeMeta is what the manifest records of a backed-up Cassandra node.
type NodeMeta struct {
	LocalNode
	// Tables lists the backed-up user tables and views as keyspace.table.
	Tables []string `json:"tables"`
	// Views maps each materialized view to its base table (both
	// keyspace.table): restoring a table restores its views with it.
	Views map[string]string `json:"views,omitempty"`
	// Commitlog lists the archived commit-log segments the backup carries
	// as commitlog/<name> (cassandra_commitlog_archive).
	Commitlog []Segment `json:"commitlog,omitempty"`
}

// ParseNodeMeta decodes a node's recorded metadata.
func ParseNodeMeta(raw json.RawMessage) (NodeMeta, error) {
	var m NodeMeta
	if len(raw) == 0 {
		return m, fmt.Errorf("no cassandra metadata recorded for this node")
	}
	err := json.Unmarshal(raw, &m)
	return m, err
}

// Selection is a restore's choice of tables: "ks.t" or "ks.*".
type Selection []string

// ParseSelection checks patterns such as "ks1.t1,ks2.*".
func ParseSelection(patterns []string) (Selection, error) {
	var out Selection
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		ks, t, ok := strings.Cut(p, ".")
		if !ok || ks == "" || t == "" || strings.ContainsAny(p, "/\\ ") || strings.Count(p, ".") != 1 {
			return nil, fmt.Errorf("table %q is not keyspace.table or keyspace.*", p)
		}
		if IsSystemKeyspace(ks) {
			return nil, fmt.Errorf("table %q: system keyspaces are restored only with a whole node", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// Match reports whether keyspace ks, table t is selected.
func (s Selection) Match(ks, t string) bool {
	for _, p := range s {
		if ok, _ := path.Match(p, ks+"."+t); ok {
			return true
		}
	}
	return false
}

// WithViews adds the views of the selected base tables (a view's data is
// derived from its base: restoring one without the other would leave
// them disagreeing).
func (s Selection) WithViews(views map[string]string) Selection {
	out := slices.Clone(s)
	for view, base := range views {
		ks, t, _ := strings.Cut(base, ".")
		vks, vt, _ := strings.Cut(view, ".")
		if s.Match(ks, t) && !out.Match(vks, vt) {
			out = append(out, view)
		}
	}
	slices.Sort(out[len(s):])
	return out
}

// Missing returns the patterns that match none of the backed-up tables.
func (s Selection) Missing(tables []string) []string {
	var out []string
	for _, p := range s {
		if !slices.ContainsFunc(tables, func(t string) bool { ok, _ := path.Match(p, t); return ok }) {
			out = append(out, p)
		}
	}
	return out
}

// splitTableDir splits "<table>-<32 hex id>".
func splitTableDir(name string) (table, id string, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || len(name)-i-1 != 32 {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}
