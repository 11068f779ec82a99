package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/worker"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport"
)

// Config is the agent's configuration. Every field has a YAML key (the
// `yaml` tag); the command line derives a flag (--node-id) and an
// environment variable (CRAYFISH_NODE_ID) from that key, so the three
// stay in step by construction.
type Config struct {
	NodeID  string `yaml:"node_id" help:"unique, stable name of this node (default: host name)"`
	DataDir string `yaml:"data_dir" help:"directory for Raft state, snapshots and caches"`
	// What a backup takes (root, include, exclude, in_place; cassandra_*)
	// are the plugins' keys: see Plugin and Plugins.
	Repository string `yaml:"repository" help:"repository URL (default file://<data_dir>/repository)"`
	// The repository secret: a password file, a key file, or the
	// CRAYFISH_PASSWORD environment variable (never a config value).
	PasswordFile string `yaml:"password_file" help:"file holding the repository password"`
	KeyFile      string `yaml:"key_file" help:"file holding a repository key (64 hex characters)"`
	HTTPAddr     string `yaml:"http_addr" help:"address of the HTTP API"`
	RaftAddr     string `yaml:"raft_addr" help:"address of the Raft transport"`
	// RaftAdvertise is the address other nodes use to reach RaftAddr when
	// it binds a wildcard.
	RaftAdvertise string `yaml:"raft_advertise" help:"Raft address advertised to peers (default: raft_addr)"`

	// Cluster membership (issue 5): gossip finds the other agents, Raft
	// replicates the operations among them.
	GossipAddr      string   `yaml:"gossip_addr" help:"address of the gossip listener (TCP and UDP)"`
	GossipAdvertise string   `yaml:"gossip_advertise" help:"gossip address advertised to peers (default: gossip_addr)"`
	HTTPAdvertise   string   `yaml:"http_advertise" help:"HTTP address advertised to peers (default: http_addr)"`
	Join            []string `yaml:"join" help:"gossip addresses of cluster members to join (comma-separated)"`
	BootstrapExpect int      `yaml:"bootstrap_expect" help:"form a new cluster once this many agents see each other (0 or 1: a node alone bootstraps unless join is set)"`
	ClusterName     string   `yaml:"cluster_name" help:"gossip label: agents of other clusters are ignored"`
	GossipKeyFile   string   `yaml:"gossip_key_file" help:"file holding the base64 gossip encryption key (16, 24 or 32 bytes)"`
	Zone            string   `yaml:"zone" help:"availability zone of this node (restores map nodes by zone)"`
	// DeadNodeTimeout: a member dead this long leaves the Raft
	// configuration (never below bootstrap_expect voters).
	// MaxVoters caps the Raft voters; further members replicate as
	// non-voters (they take part in operations, not in elections) and are
	// promoted when a voter goes.
	MaxVoters       int           `yaml:"max_voters" help:"Raft voters at most; further members join as non-voters"`
	DeadNodeTimeout time.Duration `yaml:"dead_node_timeout" help:"remove a member from Raft after it is dead this long"`
	// NodeTimeout: how long an operation waits for an unreachable node
	// before its step fails.
	NodeTimeout time.Duration `yaml:"node_timeout" help:"how long a step waits for an unreachable node before failing"`
	RaftTimeout time.Duration `yaml:"raft_timeout" help:"Raft heartbeat and election timeout"`

	// Security (all off by default): TLS for the HTTP API, node-to-node
	// calls and Raft; bearer tokens for the API.
	TLSCertFile      string `yaml:"tls_cert_file" help:"PEM certificate of this node (enables TLS for the API, node-to-node calls and Raft)"`
	TLSKeyFile       string `yaml:"tls_key_file" help:"PEM key of tls_cert_file"`
	TLSCAFile        string `yaml:"tls_ca_file" help:"PEM CA certificate(s) that sign the nodes' certificates"`
	TLSVerifyClients bool   `yaml:"tls_verify_clients" help:"mutual TLS: require client certificates signed by tls_ca_file"`
	APITokenFile     string `yaml:"api_token_file" help:"file holding the admin bearer token (required by every API call when set)"`
	APIReadTokenFile string `yaml:"api_read_token_file" help:"file holding a read-only bearer token"`
	// Insecure lets listeners on non-loopback addresses run unguarded
	// (checkExposure): the operator trusts the network.
	Insecure bool `yaml:"insecure" help:"allow http, raft and gossip listeners on non-loopback addresses without tokens, mutual TLS or a gossip key"`

	HashWorkers          int   `yaml:"hash_workers" help:"files read, hashed and saved in parallel during a snapshot (0: one per core or upload_concurrency, whichever is more)"`
	UploadConcurrency    int   `yaml:"upload_concurrency" help:"objects uploaded in parallel"`
	DownloadConcurrency  int   `yaml:"download_concurrency" help:"objects downloaded in parallel during a restore"`
	UploadBytesPerSecond int64 `yaml:"upload_bytes_per_second" help:"upload bandwidth limit in bytes per second (0: unlimited)"`
	// StorageRequestsPerSecond caps the agent's requests to the object
	// store (object stores throttle and bill per request).
	StorageRequestsPerSecond int `yaml:"storage_requests_per_second" help:"requests per second to the object store, every retry counted (0: unlimited)"`
	// ReadOnce: snapshots save the chunks they read (docs/design.md). Off,
	// snapshots only hash (and hard-link), and the upload step reads
	// again: the nodes' snapshots of one backup end closer together.
	ReadOnce        bool          `yaml:"read_once" help:"save chunks as the snapshot reads them (false: snapshots hash and hard-link only, and the upload step reads the files again)"`
	LogShipInterval time.Duration `yaml:"log_ship_interval" help:"how often the database's closed log files (Cassandra's archived commit log) are shipped to the repository between backups (0: they ride in backups only)"`
	StepAttempts    int           `yaml:"step_attempts" help:"attempts per step before the operation fails"`
	StepRetryDelay  time.Duration `yaml:"step_retry_delay" help:"delay before the first retry of a failed step (doubles each time)"`
	LockWait        time.Duration `yaml:"lock_wait" help:"how long an operation waits for a repository lock held by another (e.g. a gc)"`
	DebugPprof      bool          `yaml:"debug_pprof" help:"serve Go profiles under /debug/pprof/ on the HTTP address"`
	// MemoryLimitMiB is the Go runtime's soft memory limit: the garbage
	// collector works harder as the heap nears it instead of letting it
	// double. The upload path itself is bounded (workers × chunk size plus
	// a few packs); this keeps the heap's slack bounded too.
	MemoryLimitMiB int `yaml:"memory_limit_mib" help:"soft memory limit of the agent in MiB (0: none; GOMEMLIMIT wins if set)"`
	// Nice lowers the agent's CPU priority (like nice(1)) so backups yield
	// to the database on a busy host.
	Nice int `yaml:"nice" help:"CPU niceness of the agent, 0 (normal) to 19 (lowest)"`
	// The retention policy cleanup applies when a request names none.
	RetentionKeepLast   int           `yaml:"retention_keep_last" help:"cleanup keeps the newest N backups"`
	RetentionKeepWithin time.Duration `yaml:"retention_keep_within" help:"cleanup keeps backups younger than this"`
	RetentionMinKeep    int           `yaml:"retention_min_keep" help:"cleanup never leaves fewer backups than this"`
	LogLevel            string        `yaml:"log_level" help:"debug, info, warn or error"`

	// Schedules (config file only) are put in the replicated state by
	// each new leader; those created through the API are kept apart.
	Schedules []ScheduleConfig `yaml:"schedules" flag:"-" help:"recurring operations (config file only; see docs/operations.md)"`
	// Completion webhooks: every operation's end is POSTed to each URL.
	NotifyURLs       []string `yaml:"notify_urls" help:"URLs that receive a JSON POST when any operation ends (comma-separated)"`
	NotifySecretFile string   `yaml:"notify_secret_file" help:"file holding the secret that signs webhook bodies (HMAC-SHA256 header)"`

	// Plugin says what a backup of this node takes: the name of one of
	// the registered drivers (files: the tree at root; cassandra: the
	// local Cassandra node).
	Plugin string `yaml:"plugin" help:"what this node backs up: files or cassandra"`
	// Plugins are the registered drivers with their configurations (the
	// keys of each, prefixed); cmd/crayfish registers them.
	Plugins *Plugins `yaml:"-"`

	// embeddedRepository: Repository was defaulted into the data dir, so
	// the agent may create it (with a generated key file) on first start.
	embeddedRepository bool
}

// DefaultConfig returns the defaults with drivers registered (their
// default configurations); DataDir-derived fields are filled by Finish.
func DefaultConfig(drivers ...plugin.Driver) Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "node1"
	}
	return Config{
		NodeID:              host,
		Plugin:              "files",
		Plugins:             NewPlugins(drivers...),
		DataDir:             "crayfish-data",
		HTTPAddr:            "127.0.0.1:7300",
		RaftAddr:            "127.0.0.1:7301",
		GossipAddr:          "127.0.0.1:7302",
		ClusterName:         "crayfish",
		DeadNodeTimeout:     24 * time.Hour,
		MaxVoters:           5,
		NodeTimeout:         2 * time.Minute,
		LogShipInterval:     30 * time.Second,
		RaftTimeout:         500 * time.Millisecond,
		UploadConcurrency:   8,
		ReadOnce:            true,
		DownloadConcurrency: 8,
		StepAttempts:        3,
		StepRetryDelay:      time.Second,
		LockWait:            5 * time.Minute,
		MemoryLimitMiB:      200,
		LogLevel:            "info",
	}
}

// LoadConfigFile merges the YAML file at path into c and its plugins'
// configurations (a key with a driver's prefix is that plugin's). Unknown
// keys are an error that names the key.
func LoadConfigFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: want a mapping of keys to values", path, top.Line)
	}
	own := map[string]bool{}
	for _, f := range structFields("", reflect.ValueOf(c).Elem()) {
		own[f.Key] = true
	}
	mine := &yaml.Node{Kind: yaml.MappingNode}
	theirs := map[plugin.Config]*yaml.Node{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if own[k.Value] {
			mine.Content = append(mine.Content, k, v)
			continue
		}
		pc, rest, ok := c.Plugins.pluginFor(k.Value)
		if !ok {
			return fmt.Errorf("config %s: line %d: unknown key %q", path, k.Line, k.Value)
		}
		if theirs[pc] == nil {
			theirs[pc] = &yaml.Node{Kind: yaml.MappingNode}
		}
		key := *k
		key.Value = rest
		theirs[pc].Content = append(theirs[pc].Content, &key, v)
	}
	if err := mine.Decode(c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	for pc, n := range theirs {
		if err := n.Decode(pc); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}

// Finish fills derived defaults and validates c.
func (c *Config) Finish() error {
	if c.NodeID == "" {
		return errors.New("config: node_id must not be empty")
	}
	if c.DataDir == "" {
		return errors.New("config: data_dir must not be empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("config: data_dir: %w", err)
	}
	c.DataDir = abs
	d, err := c.activeDriver()
	if err != nil {
		return err
	}
	if err := c.Plugins.Config(d.Name()).Finish(plugin.Env{NodeID: c.NodeID, DataDir: c.DataDir}); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.Repository == "" {
		c.Repository = "file://" + filepath.ToSlash(filepath.Join(c.DataDir, "repository"))
		c.embeddedRepository = true
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftAddr
	}
	if c.GossipAdvertise == "" {
		c.GossipAdvertise = c.GossipAddr
	}
	if c.HTTPAdvertise == "" {
		c.HTTPAdvertise = c.HTTPAddr
	}
	if c.APIReadTokenFile != "" && c.APITokenFile == "" {
		return errors.New("config: api_read_token_file needs api_token_file too (nodes call each other with the admin token)")
	}
	if c.MaxVoters < 1 {
		return errors.New("config: max_voters must be at least 1")
	}
	if c.BootstrapExpect < 0 || c.DeadNodeTimeout <= 0 || c.NodeTimeout <= 0 || c.RaftTimeout < 50*time.Millisecond {
		return errors.New("config: bootstrap_expect must not be negative, dead_node_timeout and node_timeout must be positive, raft_timeout at least 50ms")
	}
	if c.UploadConcurrency < 1 || c.DownloadConcurrency < 1 || c.StepAttempts < 1 {
		return errors.New("config: upload_concurrency, download_concurrency and step_attempts must be at least 1")
	}
	if c.Nice < 0 || c.Nice > 19 {
		return fmt.Errorf("config: nice %d: want 0 to 19", c.Nice)
	}
	if c.HashWorkers < 0 || c.UploadBytesPerSecond < 0 || c.LogShipInterval < 0 || c.StepRetryDelay < 0 || c.MemoryLimitMiB < 0 || c.StorageRequestsPerSecond < 0 {
		return errors.New("config: hash_workers, upload_bytes_per_second, storage_requests_per_second, log_ship_interval, step_retry_delay and memory_limit_mib must not be negative")
	}
	for _, u := range c.NotifyURLs {
		if err := coord.CheckNotifyURL(u); err != nil {
			return fmt.Errorf("config: notify_urls: %w", err)
		}
	}
	seen := map[string]bool{}
	for i, sc := range c.Schedules {
		sp, err := sc.spec()
		if err != nil {
			return fmt.Errorf("config: schedules[%d]: %w", i, err)
		}
		if seen[sp.Name] {
			return fmt.Errorf("config: schedules[%d]: name %q used twice", i, sp.Name)
		}
		seen[sp.Name] = true
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	return c.checkExposure()
}

// ScheduleConfig is a schedule in the agent's configuration file.
type ScheduleConfig struct {
	Name     string         `yaml:"name"`
	Cron     string         `yaml:"cron"`
	TimeZone string         `yaml:"time_zone"`
	Kind     string         `yaml:"kind"`
	Options  map[string]any `yaml:"options"`
	Missed   string         `yaml:"missed"`
	Jitter   time.Duration  `yaml:"jitter"`
	MaxWait  time.Duration  `yaml:"max_wait"`
}

// UnmarshalYAML refuses keys a schedule does not have: a misspelt one
// would silently fall back to its default.
func (sc *ScheduleConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		known := map[string]bool{}
		for _, f := range reflect.VisibleFields(reflect.TypeFor[ScheduleConfig]()) {
			known[f.Tag.Get("yaml")] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !known[k.Value] {
				return fmt.Errorf("line %d: unknown schedule key %q", k.Line, k.Value)
			}
		}
	}
	type plain ScheduleConfig
	return n.Decode((*plain)(sc))
}

// spec is the checked definition of sc.
func (sc ScheduleConfig) spec() (fsm.ScheduleSpec, error) {
	sp := fsm.ScheduleSpec{Name: sc.Name, Cron: sc.Cron, TimeZone: sc.TimeZone, Kind: fsm.OpKind(sc.Kind), Missed: sc.Missed,
		Jitter: fsm.Duration(sc.Jitter), MaxWait: fsm.Duration(sc.MaxWait), Source: "config"}
	if len(sc.Options) > 0 {
		b, err := json.Marshal(sc.Options)
		if err != nil {
			return sp, fmt.Errorf("schedule %s: options: %w", sc.Name, err)
		}
		sp.Options = b
	}
	return sp, coord.CheckSchedule(&sp)
}

// scheduleSpecs are the configured schedules' definitions (Finish
// checked them).
func (c *Config) scheduleSpecs() []fsm.ScheduleSpec {
	var out []fsm.ScheduleSpec
	for _, sc := range c.Schedules {
		if sp, err := sc.spec(); err == nil {
			out = append(out, sp)
		}
	}
	return out
}

// workerConfig is what the node worker needs of c.
func (c *Config) workerConfig() worker.Config {
	return worker.Config{NodeID: c.NodeID, DataDir: c.DataDir, Zone: c.Zone, Repository: c.Repository, HashWorkers: c.HashWorkers,
		UploadConcurrency: c.UploadConcurrency, DownloadConcurrency: c.DownloadConcurrency, UploadBytesPerSecond: c.UploadBytesPerSecond, ReadOnce: c.ReadOnce}
}

// coordConfig is what the coordinator needs of c.
func (c *Config) coordConfig() coord.Config {
	return coord.Config{NodeID: c.NodeID, Plugin: c.Plugin, StepAttempts: c.StepAttempts, StepRetryDelay: c.StepRetryDelay,
		LockWait: c.LockWait, Retention: c.RetentionPolicy()}
}

// TLSFiles returns the TLS settings.
func (c *Config) TLSFiles() transport.TLSFiles {
	return transport.TLSFiles{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, CAFile: c.TLSCAFile, VerifyClients: c.TLSVerifyClients}
}

// RetentionPolicy is the configured retention policy.
func (c *Config) RetentionPolicy() storage.RetentionPolicy {
	return storage.RetentionPolicy{KeepLast: c.RetentionKeepLast, KeepWithin: storage.Duration(c.RetentionKeepWithin), MinKeep: c.RetentionMinKeep}
}
