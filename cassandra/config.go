package cassandra

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is how a crayfish node reaches and controls its Cassandra node.
type Config struct {
	// Hosts are CQL contact points; the first is this node's own Cassandra
	// (backups and restores talk to it alone, with no host discovery, so
	// the token ring and snapshot are this node's).
	Hosts    []string
	Port     int
	Username string
	Password string
	// TLS for CQL (all optional): a CA bundle to trust, a client
	// certificate and key for mutual TLS.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// DataDirs are Cassandra's data_file_directories (JBOD: several).
	DataDirs       []string
	CommitlogDir   string
	SavedCachesDir string
	HintsDir       string
	// Nodetool is the nodetool command line prefix (words), such as
	// ["nodetool", "-h", "127.0.0.1"].
	Nodetool []string
	// SSTableLoader is the sstableloader command line prefix (words): a
	// restore onto a cluster of another size streams the backed-up
	// SSTables with it (it is given -d, -p, credentials and a directory).
	SSTableLoader []string
	// LoaderJobs is how many loaders a node runs at a time.
	LoaderJobs int
	// StartCommand and StopCommand are shell commands; StartCommand
	// returns once CQL answers or fails. During a restore crayfish puts the
	// path of a YAML override (initial_token, num_tokens, auto_bootstrap)
	// in CRAYFISH_CASSANDRA_OVERRIDE for the start command to apply.
	StartCommand string
	StopCommand  string
	// OverrideFile is where that override is written.
	OverrideFile string
	// LogFile is Cassandra's system.log: after loading SSTables a restore
	// reads what Cassandra logged about them (corrupt, skipped, refused).
	LogFile string
	// FileOwner owns what a restore puts into Cassandra's directories
	// ("user:group" or "uid:gid"); "" means the data directory's owner.
	FileOwner string
	// CommitlogArchive has Cassandra archive every closed commit-log
	// segment into SpoolDir (with Executable's cassandra-archive-segment),
	// through the properties file ArchivingFile, which Cassandra reads
	// from its classpath at start-up. Backups carry the spooled segments;
	// those closed more than CommitlogKeep ago leave the spool. A restore
	// to a time writes ArchivingFile's restore keys whether or not
	// archiving is on.
	CommitlogArchive bool
	ArchivingFile    string
	CommitlogKeep    time.Duration
	SpoolDir         string
	Executable       string
	// Timeout bounds one CQL request; StartTimeout waits for CQL after the
	// start command.
	Timeout      time.Duration
	StartTimeout time.Duration
}

// Validate names the first missing or wrong setting.
func (c *Config) Validate() error {
	switch {
	case len(c.Hosts) == 0:
		return errors.New("cassandra_hosts is empty")
	case len(c.DataDirs) == 0:
		return errors.New("cassandra_data_dirs is empty")
	case len(c.Nodetool) == 0:
		return errors.New("cassandra_nodetool is empty")
	}
	for _, d := range c.DataDirs {
		if !strings.HasPrefix(d, "/") {
			return fmt.Errorf("cassandra data dir %q is not absolute", d)
		}
	}
	if c.FileOwner != "" {
		if _, err := parseOwner(c.FileOwner); err != nil {
			return fmt.Errorf("cassandra_file_owner: %w", err)
		}
	}
	if c.CommitlogArchive {
		if c.ArchivingFile == "" || !strings.HasPrefix(c.ArchivingFile, "/") {
			return fmt.Errorf("cassandra_commitlog_archiving_file %q must be an absolute path", c.ArchivingFile)
		}
		// Cassandra splits archive_command on single spaces.
		for key, v := range map[string]string{"the crayfish executable": c.Executable, "the commit-log spool (in the data dir)": c.SpoolDir} {
			if v == "" || strings.ContainsAny(v, " \t\n") {
				return fmt.Errorf("cassandra_commitlog_archive: %s %q is empty or holds white space, which Cassandra's archive_command cannot carry (it splits the command on spaces)", key, v)
			}
		}
	}
	if c.CommitlogKeep < 0 {
		return errors.New("cassandra_commitlog_keep is negative")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("cassandra TLS needs both a certificate and a key file")
	}
	return nil
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.Port == 0 {
		d.Port = 9042
	}
	if len(d.SSTableLoader) == 0 {
		d.SSTableLoader = []string{"sstableloader"}
	}
	if d.LoaderJobs <= 0 {
		d.LoaderJobs = 2
	}
	if d.Timeout == 0 {
		d.Timeout = 20 * time.Second
	}
	if d.StartTimeout == 0 {
		d.StartTimeout = 5 * time.Minute
	}
	return d
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCAFile == "" && c.TLSCertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", c.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
