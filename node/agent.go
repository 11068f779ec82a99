package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/auth"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/wallclock"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/node/worker"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport"
	"github.com/crayfish-backup/crayfish/transport/forward"
)

// Agent is one crayfish node: Raft store, coordinator engine, node worker
// and HTTP API.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	cluster *Cluster
	jobs    *worker.Jobs
	// jobsCancel ends the node-side jobs at shutdown.
	jobsCancel context.CancelFunc
	serverTLS  *tls.Config // nil: plain HTTP
	store      *Store
	repo       *storage.Repository
	engine     *coord.Engine
	worker     *worker.LocalWorker
	server     *Server
}

// NewAgent opens the data dir, the repository and Raft.
func NewAgent(ctx context.Context, cfg Config, log *slog.Logger) (*Agent, error) {
	if cfg.Nice > 0 {
		if err := setNice(cfg.Nice); err != nil {
			return nil, fmt.Errorf("nice %d: %w", cfg.Nice, err)
		}
	}
	if cfg.MemoryLimitMiB > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	plugins, err := openPlugins(cfg, log.With("component", "worker"))
	if err != nil {
		return nil, err
	}
	repo, err := openRepository(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	fence, err := worker.OpenFence(cfg.DataDir)
	if err != nil {
		repo.Close()
		return nil, err
	}
	store, err := OpenStore(cfg, log)
	if err != nil {
		repo.Close()
		return nil, err
	}
	tokens, err := auth.LoadTokens(cfg.APIReadTokenFile, cfg.APITokenFile)
	if err != nil {
		store.Close()
		repo.Close()
		return nil, err
	}
	peerTransport := http.DefaultTransport.(*http.Transport).Clone()
	peerTransport.DialContext = transport.NewDialer(cfg.HTTPAdvertise, 30*time.Second).DialContext
	peers := &peerClient{http: &http.Client{Transport: peerTransport}, token: tokens.AdminToken()}
	var serverTLS *tls.Config
	if files := cfg.TLSFiles(); files.Enabled() {
		if serverTLS, err = files.ServerConfig(); err == nil {
			peerTransport.TLSClientConfig, err = files.ClientConfig()
		}
		if err != nil {
			store.Close()
			repo.Close()
			return nil, err
		}
		peers.tls = true
	}
	notifySecret, err := readNotifySecret(cfg.NotifySecretFile)
	if err != nil {
		store.Close()
		repo.Close()
		return nil, err
	}
	repoID := repo.Config().ID
	cluster, err := StartCluster(cfg, repoID, store, peers, log)
	if err != nil {
		store.Close()
		repo.Close()
		return nil, err
	}
	m := newMetrics()
	local := worker.NewLocalWorker(cfg.workerConfig(), plugins, repo, fence, log.With("component", "worker"))
	m.watchLogShipping(local.LogShipStatus)
	m.watchIO(local.IOStats)
	m.registry.MustRegister(&repoCounter{repo: repo, every: time.Minute})
	m.registry.MustRegister(&clusterCollector{plugin: cmp.Or(cfg.Plugin, "files"), fsm: store.FSM(), raft: store.Status,
		members: cluster.Members, epoch: fence.Accepted})
	jobsCtx, jobsCancel := context.WithCancel(context.Background())
	jobs := worker.NewJobs(jobsCtx, local, fence, repoID, log.With("component", "jobs"))
	engine := coord.NewEngine(coord.EngineOptions{
		Config: cfg.coordConfig(), RepoID: repoID, Log: store, Repo: repo, Metrics: m, Now: wallclock.Now,
		Logger: log.With("component", "coordinator"),
		Workers: func(node string) (wire.Worker, error) {
			if node == cfg.NodeID {
				return wire.Caller(jobs.Do), nil
			}
			return coord.NewRemoteWorker(node, func() (string, error) { return cluster.NodeURL(node) },
				peers, cfg.NodeTimeout, log.With("component", "coordinator")), nil
		},
		FenceNodes: func(ctx context.Context, epoch uint64) { fenceAll(ctx, store, cluster, peers, fence, epoch, log) },
	})
	zoneOf := func(node string) string {
		if node == cfg.NodeID {
			return cfg.Zone
		}
		mem, _ := cluster.gossip.Member(node)
		return mem.Zone
	}
	preview := func(ctx context.Context, node string, req wire.PreviewRequest) (api.NodeRestorePreview, error) {
		if node == cfg.NodeID {
			return local.PreviewRestore(ctx, req)
		}
		base, err := cluster.NodeURL(node)
		if err != nil {
			return api.NodeRestorePreview{}, err
		}
		return peers.previewRestore(ctx, base, req)
	}
	otherRepository := func(node string) string {
		mem, ok := cluster.gossip.Member(node)
		if !ok || cluster.sameRepository(mem) {
			return ""
		}
		return mem.RepoID
	}
	ops := coord.NewOperations(coord.OperationsOptions{NodeID: cfg.NodeID, Engine: engine, Members: store.Members, Catalog: repo,
		Planners: cfg.Plugins, ZoneOf: zoneOf, Preview: preview, OtherRepository: otherRepository, Schedules: cfg.scheduleSpecs()})
	engine.WhileLeading(ops.RunSchedules)
	engine.WhileLeading(coord.NewNotifier(engine, coord.NotifyOptions{URLs: cfg.NotifyURLs, Secret: notifySecret}).Run)
	httpLog := log.With("component", "http")
	srv := &Server{ops: ops, catalog: repo, store: store, log: httpLog, metrics: m, pprof: cfg.DebugPprof,
		cluster: cluster, jobs: jobs, fence: fence, previewer: local}
	if tokens.Enabled() {
		srv.auth = func(h http.Handler) http.Handler {
			return tokens.Middleware(h, func(path string) bool { return path == "/healthz" })
		}
	}
	srv.forwarder = &forward.Forwarder{NodeID: cfg.NodeID, Transport: peers.http.Transport,
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			srv.writeError(w, r, fmt.Errorf("%w: %v", wire.ErrNotLeader, err))
		}}
	return &Agent{
		cfg: cfg, log: log, store: store, repo: repo, engine: engine, worker: local, cluster: cluster,
		jobs: jobs, jobsCancel: jobsCancel, server: srv, serverTLS: serverTLS,
	}, nil
}

// fenceAll raises every node's fencing epoch to epoch (best effort: a
// node that misses it still refuses stale calls once the new coordinator
// has called it).
func fenceAll(ctx context.Context, store *Store, cluster *Cluster, peers *peerClient, local *worker.Fence, epoch uint64, log *slog.Logger) {
	if err := local.Admit(wire.StepRef{OpID: "-", Epoch: epoch, Step: -1}); err != nil {
		log.Warn("raising the local fencing epoch", "err", err)
	}
	servers, err := store.Servers()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, srv := range servers {
		id := string(srv.ID)
		if id == store.nodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, err := cluster.NodeURL(id)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			body, _ := json.Marshal(FenceRequest{Epoch: epoch})
			req, err := http.NewRequestWithContext(cctx, http.MethodPost, base+"/internal/v1/fence", bytes.NewReader(body))
			if err != nil {
				return
			}
			resp, err := peers.Do(req)
			if err != nil {
				log.Debug("fencing node", "node", id, "err", err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
}

// Run serves until ctx ends, then shuts down in order: HTTP, coordinator, Raft.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		a.close()
		return fmt.Errorf("http listen: %w", err)
	}
	if a.serverTLS != nil {
		ln = tls.NewListener(ln, a.serverTLS)
	}
	srv := &http.Server{Handler: a.server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	engineCtx, stopEngine := context.WithCancel(ctx)
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		a.engine.Run(engineCtx)
	}()
	clusterDone := make(chan struct{})
	go func() {
		defer close(clusterDone)
		a.cluster.Run(engineCtx)
	}()
	go a.sweepSnapshots(engineCtx)
	go a.shipLogs(engineCtx)
	a.log.Info("agent running", "node", a.cfg.NodeID, "http", ln.Addr().String(), "raft", a.cfg.RaftAddr, "gossip", a.cfg.GossipAddr,
		"repository", a.cfg.Repository, "plugin", a.cfg.Plugin, "data_dir", a.cfg.DataDir)

	select {
	case <-ctx.Done():
	case err = <-httpErr:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	stopEngine()
	<-engineDone
	<-clusterDone
	a.jobsCancel()
	a.close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// sweepSnapshots removes, now and then, the local snapshots of operations
// that finished while this node could not be told (it was down).
func (a *Agent) sweepSnapshots(ctx context.Context) {
	finished := func(opID string) bool {
		op := a.store.FSM().Operation(opID)
		return op != nil && op.State.Terminal()
	}
	for {
		// Wait first: after a restart the local replica catches up.
		if wait.Sleep(ctx, time.Minute) != nil {
			return
		}
		a.worker.SweepSnapshots(finished)
		if wait.Sleep(ctx, 9*time.Minute) != nil {
			return
		}
	}
}

// shipLogs ships the database's closed log files every
// log_ship_interval (plugin.LogShipper; a plugin without logs makes each
// round a no-op). A failed round is logged and counted; the next one
// ships what is still pending.
func (a *Agent) shipLogs(ctx context.Context) {
	every := a.cfg.LogShipInterval
	if every <= 0 {
		return
	}
	for wait.Sleep(ctx, every) == nil {
		if _, err := a.worker.ShipLogs(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("shipping closed log files failed; the next round tries again", "err", err)
		}
	}
}

func (a *Agent) close() {
	a.cluster.Shutdown()
	if err := a.store.Close(); err != nil {
		a.log.Warn("raft shutdown", "err", err)
	}
	if err := a.worker.Close(); err != nil {
		a.log.Warn("hash cache", "err", err)
	}
	a.repo.Close()
}

// openRepository opens the configured repository. The embedded default
// (a repository inside the data dir) is created on first start, encrypted
// with a key file generated next to it; any other repository must be made
// with `crayfish init`, so a typo in a URL never creates a stray one.
func openRepository(ctx context.Context, cfg Config, log *slog.Logger) (*storage.Repository, error) {
	secret, err := LoadSecret(cfg.PasswordFile, cfg.KeyFile, os.Getenv)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(cfg.DataDir, "repository.key")
	if cfg.embeddedRepository && secret.IsZero() {
		if s, err := LoadSecret("", keyPath, os.Getenv); err == nil {
			secret = s
		}
	}
	repo, err := storage.Open(ctx, cfg.Repository, storage.OpenOptions{Secret: secret, RequestsPerSecond: float64(cfg.StorageRequestsPerSecond)})
	if errors.Is(err, storage.ErrNotInitialized) && cfg.embeddedRepository {
		if secret.IsZero() {
			k, kerr := WriteNewKeyFile(keyPath)
			if kerr != nil {
				return nil, kerr
			}
			secret = storage.Secret{KeyMaterial: k}
			log.Warn("created a key file for the embedded repository: without it the backups cannot be read; keep a copy somewhere safe",
				"key_file", keyPath)
		}
		repo, err = storage.Init(ctx, cfg.Repository, storage.InitOptions{Secret: secret, KeyLabel: "embedded default of " + cfg.NodeID})
		if err == nil {
			log.Info("created the embedded repository", "repository", cfg.Repository)
		}
	}
	if err != nil {
		return nil, err
	}
	return repo, nil
}

// setNice lowers the priority of every thread of the process. On Linux
// niceness is per thread and new threads inherit their creator's, so the
// runtime's existing threads are set one by one — again while a pass
// finds threads the last one did not (a thread not yet set may have
// started another meanwhile).
func setNice(n int) error {
	var last map[int]bool
	for range 20 {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return unix.Setpriority(unix.PRIO_PROCESS, 0, n)
		}
		seen := map[int]bool{}
		for _, t := range tids {
			var tid int
			if _, err := fmt.Sscan(t.Name(), &tid); err != nil {
				continue
			}
			seen[tid] = true
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
		if maps.Equal(seen, last) {
			return nil
		}
		last = seen
	}
	return nil
}

// readNotifySecret reads the webhook signing secret (surrounding
// whitespace dropped); no file means unsigned webhooks.
func readNotifySecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notify_secret_file: %w", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, fmt.Errorf("notify_secret_file %s is empty", path)
	}
	return b, nil
}
