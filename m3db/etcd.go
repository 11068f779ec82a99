package m3db

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrUnavailable marks an etcd or m3dbnode that does not answer.
var ErrUnavailable = errors.New("m3db is not available")

// EtcdCapture is what a backup takes of etcd: every key it carries, read
// at one revision (one consistent cut of placement, namespaces and the
// extra keys).
type EtcdCapture struct {
	Revision int64     `json:"revision"`
	Keys     []EtcdKey `json:"keys"`
}

// EtcdKey is one key at the capture's revision.
type EtcdKey struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	ModRevision int64  `json:"mod_revision"`
	Version     int64  `json:"version"`
}

// etcdClient connects to the cluster's etcd.
func (s *Settings) etcdClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: s.EtcdEndpoints, DialTimeout: 10 * time.Second, Username: s.EtcdUsername}
	if s.EtcdPasswordFile != "" {
		pw, err := s.password()
		if err != nil {
			return nil, err
		}
		cfg.Password = pw
	}
	if s.EtcdCAFile != "" || s.EtcdCertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.EtcdCAFile != "" {
			pem, err := os.ReadFile(s.EtcdCAFile)
			if err != nil {
				return nil, fmt.Errorf("m3db_etcd_ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("m3db_etcd_ca_file %s holds no PEM certificate", s.EtcdCAFile)
			}
		}
		if s.EtcdCertFile != "" {
			cert, err := tls.LoadX509KeyPair(s.EtcdCertFile, s.EtcdKeyFile)
			if err != nil {
				return nil, fmt.Errorf("m3db etcd client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// captureEtcd reads the placement, the namespace registry and the extra
// keys at one revision: the first read fixes it, the others read at it.
// A missing placement or registry is an error (the cluster is not
// initialised, or env and service are wrong); an extra prefix may be
// empty.
func (s *Settings) captureEtcd(ctx context.Context, cli *clientv3.Client) (EtcdCapture, error) {
	var c EtcdCapture
	first, err := cli.Get(ctx, s.PlacementKey())
	if err != nil {
		return c, fmt.Errorf("%w: etcd at %s: %v", ErrUnavailable, strings.Join(s.EtcdEndpoints, ","), err)
	}
	c.Revision = first.Header.Revision
	if len(first.Kvs) == 0 {
		return c, fmt.Errorf("etcd has no placement at %s (is the cluster initialised? m3db_env and m3db_service name the key)", s.PlacementKey())
	}
	add := func(resp *clientv3.GetResponse) {
		for _, kv := range resp.Kvs {
			c.Keys = append(c.Keys, EtcdKey{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision, Version: kv.Version})
		}
	}
	add(first)
	ns, err := cli.Get(ctx, s.NamespacesKey(), clientv3.WithRev(c.Revision))
	if err != nil {
		return c, fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
	}
	if len(ns.Kvs) == 0 {
		return c, fmt.Errorf("etcd has no namespace registry at %s", s.NamespacesKey())
	}
	add(ns)
	for _, k := range s.ExtraKeys {
		opts := []clientv3.OpOption{clientv3.WithRev(c.Revision)}
		key, prefix := strings.CutSuffix(k, "*")
		if prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		resp, err := cli.Get(ctx, key, opts...)
		if err != nil {
			return c, fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
		}
		add(resp)
	}
	return c, nil
}

// ErrChanged marks a placement or namespace registry that changed while
// a snapshot was taken.
var ErrChanged = errors.New("the M3DB placement or namespaces changed during the snapshot")

// checkUnchanged re-reads the placement and the namespace registry: a
// mod revision after the capture's revision means they changed since.
func (s *Settings) checkUnchanged(ctx context.Context, cli *clientv3.Client, c EtcdCapture) error {
	for _, key := range []string{s.PlacementKey(), s.NamespacesKey()} {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%w: %s was deleted (revision %d)", ErrChanged, key, resp.Header.Revision)
		}
		if mod := resp.Kvs[0].ModRevision; mod > c.Revision {
			return fmt.Errorf("%w: %s was written at revision %d, after the snapshot's %d", ErrChanged, key, mod, c.Revision)
		}
	}
	return nil
}
