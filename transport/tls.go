package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// ErrTLSConfig wraps every error about TLS files or settings, so callers
// (config validation, agent start-up) can tell a misconfiguration from a
// network failure with errors.Is.
var ErrTLSConfig = errors.New("tls config")

// certCheckInterval is how often, at most, a handshake stats the
// certificate and key files to notice a rotation. Statting on every
// handshake would be cheap enough, but Raft reconnects in bursts and a
// few seconds of delay is irrelevant for a rotation.
const certCheckInterval = 5 * time.Second

// TLSFiles names PEM files; all empty means TLS is off.
//
// One node uses one set of files both to serve and to dial (Raft peers are
// symmetric), so with VerifyClients the certificate must carry both the
// serverAuth and the clientAuth extended key usages, and it must name the
// node as peers dial it: an IP SAN for an advertised IP address, a DNS SAN
// for a host name. Only the certificate and key are reloaded when they
// change on disk; a new CA file takes a restart.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	// VerifyClients turns on mutual TLS: servers require a client
	// certificate signed by CAFile, and clients present CertFile/KeyFile.
	VerifyClients bool
}

// Enabled reports whether any TLS setting is given. VerifyClients alone
// counts, so that it fails validation instead of silently leaving TLS off.
func (f TLSFiles) Enabled() bool {
	return f.CertFile != "" || f.KeyFile != "" || f.CAFile != "" || f.VerifyClients
}

// validate checks the combination of settings, before any file is read.
func (f TLSFiles) validate() error {
	switch {
	case f.CertFile != "" && f.KeyFile == "":
		return fmt.Errorf("%w: certificate file %s given without a key file", ErrTLSConfig, f.CertFile)
	case f.CertFile == "" && f.KeyFile != "":
		return fmt.Errorf("%w: key file %s given without a certificate file", ErrTLSConfig, f.KeyFile)
	case f.VerifyClients && f.CAFile == "":
		return fmt.Errorf("%w: verifying clients needs a CA file to verify them against", ErrTLSConfig)
	case f.VerifyClients && f.CertFile == "":
		return fmt.Errorf("%w: verifying clients needs a certificate and key to present as a client", ErrTLSConfig)
	}
	return nil
}

// ServerConfig returns the configuration to accept TLS connections with.
// The certificate is reloaded from disk when its files change (checked at
// most every few seconds), so operators can rotate certificates without a
// restart. With VerifyClients, clients must present a certificate signed
// by CAFile.
func (f TLSFiles) ServerConfig() (*tls.Config, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.CertFile == "" {
		return nil, fmt.Errorf("%w: serving TLS needs a certificate file and a key file", ErrTLSConfig)
	}
	rl, err := newCertReloader(f.CertFile, f.KeyFile, certCheckInterval)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return rl.certificate(), nil
		},
	}
	if f.VerifyClients {
		pool, err := loadCAPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = pool
	}
	return cfg, nil
}

// ClientConfig returns the configuration to dial TLS servers with: servers
// are verified against CAFile, or the system pool when CAFile is empty.
// With VerifyClients the certificate is presented as client certificate,
// reloaded like ServerConfig's. ServerName is left empty: tls.Dial and
// tls.DialWithDialer take it from the dialed address, so one config serves
// every peer; set it on a clone to dial under a different name.
func (f TLSFiles) ClientConfig() (*tls.Config, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
	}
	if f.CAFile != "" {
		pool, err := loadCAPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.VerifyClients {
		rl, err := newCertReloader(f.CertFile, f.KeyFile, certCheckInterval)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return rl.certificate(), nil
		}
	}
	return cfg, nil
}

// loadCAPool parses every certificate in a PEM file. Unlike
// x509.CertPool.AppendCertsFromPEM it fails on a block it cannot parse,
// because a silently skipped CA shows up much later as an unexplained
// "unknown authority".
func loadCAPool(path string) (*x509.CertPool, error) {
	data, err := readTLSFile("CA file", path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file %s: certificate %d: %w", ErrTLSConfig, path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: CA file %s: no PEM certificate found", ErrTLSConfig, path)
	}
	return pool, nil
}

// readTLSFile reads a file, naming its role and path once in the error.
func readTLSFile(what, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrTLSConfig, what, path, unwrapPath(err))
	}
	return data, nil
}

// loadKeyPair reads and parses a certificate and its key.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readTLSFile("certificate file", certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readTLSFile("key file", keyFile)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate file %s with key file %s: %w", ErrTLSConfig, certFile, keyFile, err)
	}
	return &c, nil
}

// fileStamp identifies one version of a file well enough to notice a
// rotation, whether the file is rewritten in place or replaced by a
// rename or a symlink swap (as Kubernetes does for mounted secrets).
type fileStamp struct {
	mod  time.Time
	size int64
}

func statStamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// certReloader serves a key pair and reloads it when its files change.
// A failed reload keeps the previous pair: a rotation writes the
// certificate and the key one after the other, and a half-written pair
// must not take the node off the network. The next check retries.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time // for tests

	mu                  sync.Mutex
	cert                *tls.Certificate
	certStamp, keyStamp fileStamp
	lastCheck           time.Time
	lastErr             error // of the last failed reload, for tests and debugging
}

// newCertReloader loads the pair once; failing here, at start-up, is an
// error, unlike a failed reload later.
func newCertReloader(certFile, keyFile string, interval time.Duration) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, now: time.Now}
	if err := r.reload(); err != nil {
		return nil, err
	}
	r.lastCheck = r.now()
	return r, nil
}

// reload loads the pair if its stamps differ from the loaded one's. The
// stamps are taken before reading, so a write racing the read is seen as a
// change at the next check. Callers hold mu (or own r exclusively).
func (r *certReloader) reload() error {
	cs, err := statStamp(r.certFile)
	if err != nil {
		return fmt.Errorf("%w: certificate file %s: %w", ErrTLSConfig, r.certFile, unwrapPath(err))
	}
	ks, err := statStamp(r.keyFile)
	if err != nil {
		return fmt.Errorf("%w: key file %s: %w", ErrTLSConfig, r.keyFile, unwrapPath(err))
	}
	if r.cert != nil && cs == r.certStamp && ks == r.keyStamp {
		return nil
	}
	c, err := loadKeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.certStamp, r.keyStamp = c, cs, ks
	return nil
}

// certificate returns the current pair, first reloading it if the check
// interval has passed and the files changed.
func (r *certReloader) certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= r.interval {
		r.lastCheck = now
		r.lastErr = r.reload()
	}
	return r.cert
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
