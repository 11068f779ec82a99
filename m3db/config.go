package m3db

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// Name is the plugin's name in configuration and manifests.
const Name = "m3db"

// Settings are the plugin's configuration keys, each prefixed with
// "m3db_" (etcd_endpoints → m3db_etcd_endpoints, --m3db-etcd-endpoints,
// CRAYFISH_M3DB_ETCD_ENDPOINTS).
type Settings struct {
	EtcdEndpoints    []string `yaml:"etcd_endpoints" help:"etcd endpoints of the M3DB cluster (comma-separated host:port or URLs)"`
	EtcdUsername     string   `yaml:"etcd_username" help:"etcd user name"`
	EtcdPasswordFile string   `yaml:"etcd_password_file" help:"file holding the etcd password"`
	EtcdCAFile       string   `yaml:"etcd_ca_file" help:"PEM CA certificate(s) to trust for etcd over TLS"`
	EtcdCertFile     string   `yaml:"etcd_cert_file" help:"PEM client certificate for etcd (mutual TLS)"`
	EtcdKeyFile      string   `yaml:"etcd_key_file" help:"PEM key of m3db_etcd_cert_file"`
	Env              string   `yaml:"env" help:"M3 environment of the cluster's etcd keys"`
	Service          string   `yaml:"service" help:"M3 service name of the placement"`
	// ExtraKeys are further etcd keys the backup carries; one ending in
	// "*" is a prefix.
	ExtraKeys []string `yaml:"extra_keys" help:"further etcd keys to back up (comma-separated; a trailing * makes a prefix)"`
	// DataDir is the node's filePathPrefix.
	DataDir          string        `yaml:"data_dir" help:"the node's M3DB data directory (filesystem.filePathPrefix)"`
	IncludeSnapshots bool          `yaml:"include_snapshots" help:"back up snapshot filesets with their metadata (data and index filesets always)"`
	IncludeCommit    bool          `yaml:"include_commitlogs" help:"back up commit logs (closed ones linked, the two open ones copied up to their last whole chunk)"`
	StartCommand     string        `yaml:"start_command" help:"shell command that starts m3dbnode"`
	StopCommand      string        `yaml:"stop_command" help:"shell command that stops m3dbnode (must succeed when it is already stopped)"`
	StartTimeout     time.Duration `yaml:"start_timeout" help:"how long to wait for the node to report bootstrapped after starting it"`
	HealthURL        string        `yaml:"health_url" help:"the node's health endpoint (reports bootstrapped)"`
	ClusterURL       string        `yaml:"cluster_url" help:"the node's cluster HTTP API (reads every replica), for a restore's read-back"`
	// The node's placement identity; what is not given is read from the
	// placement by instance id.
	InstanceID     string `yaml:"instance_id" help:"the node's placement instance id (default: the host name)"`
	Endpoint       string `yaml:"endpoint" help:"the node's placement endpoint host:port"`
	Hostname       string `yaml:"hostname" help:"the node's placement hostname"`
	Port           int    `yaml:"port" help:"the node's placement port"`
	DebugPort      int    `yaml:"debug_port" help:"the node's debug port, recorded in the placement"`
	IsolationGroup string `yaml:"isolation_group" help:"the node's placement isolation group"`
	Zone           string `yaml:"zone" help:"the node's placement zone"`
}

// Driver registers the M3DB plugin.
type Driver struct{}

// Name is "m3db".
func (Driver) Name() string { return Name }

// NewConfig returns the defaults of a packaged M3DB (systemd unit).
func (Driver) NewConfig() plugin.Config {
	host, _ := os.Hostname()
	return &Settings{
		EtcdEndpoints: []string{"127.0.0.1:2379"}, Env: "default_env", Service: "m3db",
		DataDir: "/var/lib/m3db", IncludeSnapshots: true, IncludeCommit: true,
		StartCommand: "systemctl start m3dbnode", StopCommand: "systemctl stop m3dbnode",
		StartTimeout: 10 * time.Minute, HealthURL: "http://127.0.0.1:9002/health", ClusterURL: "http://127.0.0.1:9003", InstanceID: host,
	}
}

// Finish checks the settings, naming the first bad key.
func (s *Settings) Finish(plugin.Env) error {
	switch {
	case len(s.EtcdEndpoints) == 0:
		return errors.New("m3db_etcd_endpoints is empty")
	case s.Env == "" || s.Service == "":
		return errors.New("m3db_env and m3db_service must not be empty")
	case !filepath.IsAbs(s.DataDir):
		return fmt.Errorf("m3db_data_dir %q is not absolute", s.DataDir)
	case s.InstanceID == "":
		return errors.New("m3db_instance_id is empty")
	case (s.EtcdCertFile == "") != (s.EtcdKeyFile == ""):
		return errors.New("m3db etcd TLS needs both m3db_etcd_cert_file and m3db_etcd_key_file")
	case s.Port < 0 || s.Port > 65535:
		return fmt.Errorf("m3db_port %d is not a port", s.Port)
	case s.DebugPort < 0 || s.DebugPort > 65535:
		return fmt.Errorf("m3db_debug_port %d is not a port", s.DebugPort)
	case s.StartTimeout <= 0:
		return fmt.Errorf("m3db_start_timeout %s is not positive", s.StartTimeout)
	}
	for _, k := range s.ExtraKeys {
		if strings.TrimSuffix(k, "*") == "" {
			return fmt.Errorf("m3db_extra_keys: %q names no key", k)
		}
	}
	if s.EtcdPasswordFile != "" {
		if _, err := s.password(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Settings) password() (string, error) {
	b, err := os.ReadFile(s.EtcdPasswordFile)
	if err != nil {
		return "", fmt.Errorf("m3db_etcd_password_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// PlacementKey and NamespacesKey are the etcd keys of the cluster's
// placement and namespace registry.
func (s *Settings) PlacementKey() string  { return "_sd.placement/" + s.Env + "/" + s.Service }
func (s *Settings) NamespacesKey() string { return "_kv/" + s.Env + "/m3db.node.namespaces" }

// What the driver implements of the seam.
var (
	_ plugin.Driver    = Driver{}
	_ plugin.Describer = Driver{}
)
