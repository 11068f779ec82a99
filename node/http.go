package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/node/worker"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport/forward"
	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// Version is the build's version, set with -ldflags by releases.
var Version = "dev"

// MaxWait bounds a long-poll.
const MaxWait = 60 * time.Second

// maxBodyBytes bounds request bodies: every public request and internal
// call is a small JSON object, except a node step's start
// (maxInternalBodyBytes).
const maxBodyBytes = 1 << 20

// bodyLimit is the most a route's request body may hold.
func bodyLimit(pattern string) int64 {
	if pattern == "POST /internal/v1/jobs" {
		return maxInternalBodyBytes
	}
	return maxBodyBytes
}

// Server is the public HTTP API of one agent.
type Server struct {
	ops *coord.Operations
	// catalog reads backups for describe.
	catalog coord.Catalog
	store   *Store
	log     *slog.Logger
	metrics *metrics
	pprof   bool
	// cluster, jobs and fence serve the cluster calls; forwarder passes
	// writes to the leader. All nil in a server without a cluster (tests).
	cluster   *Cluster
	jobs      *worker.Jobs
	fence     *worker.Fence
	forwarder *forward.Forwarder
	// previewer answers restore previews for this node (nil: none).
	previewer interface {
		PreviewRestore(ctx context.Context, req wire.PreviewRequest) (api.NodeRestorePreview, error)
	}
	// auth guards every route but /healthz when tokens are configured.
	auth func(http.Handler) http.Handler
	// routes are the patterns Handler registered, for the spec's test.
	routes []string
}

// Route kinds: where a request may be answered.
const (
	anyNode    = iota // answered from the local FSM or repository
	leaderOnly        // writes: forwarded to the leader by followers
	consistent        // reads: local, or through the leader with ?consistent=true
)

// Handler returns the routed API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes = s.routes[:0]
	route := func(pattern string, where int, h func(http.ResponseWriter, *http.Request) error) {
		s.routes = append(s.routes, pattern)
		limit := bodyLimit(pattern)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			defer func() { s.metrics.httpRequests.WithLabelValues(pattern, strconv.Itoa(rec.status)).Inc() }()
			// An oversized body is refused before a byte of it is read or
			// forwarded; one without a length is cut off at the limit.
			if r.ContentLength > limit {
				s.writeError(rec, r, fmt.Errorf("%w: %d bytes, this endpoint takes at most %d", wire.ErrBodyTooLarge, r.ContentLength, limit))
				return
			}
			r.Body = http.MaxBytesReader(rec, r.Body, limit)
			if s.routeToLeader(rec, r, where) {
				return
			}
			if err := h(rec, r); err != nil {
				s.writeError(rec, r, err)
			}
		})
	}
	route("POST /v1/backups", leaderOnly, s.startBackup)
	route("GET /v1/backups", anyNode, s.listBackups)
	route("GET /v1/backups/{id}", anyNode, s.describeBackup)
	route("POST /v1/restores", leaderOnly, s.startRestore)
	route("POST /v1/restores/preview", anyNode, s.previewRestores)
	route("POST /v1/deletions", leaderOnly, s.startDelete)
	route("POST /v1/gc", leaderOnly, s.startGC)
	route("POST /v1/cleanups", leaderOnly, s.startCleanup)
	route("GET /v1/cleanups/preview", anyNode, s.cleanupPreview)
	route("POST /v1/verifications", leaderOnly, s.startVerify)
	route("POST /v1/repairs", leaderOnly, s.startRepair)
	route("GET /v1/operations", consistent, s.listOperations)
	route("GET /v1/operations/{id}", consistent, s.getOperation)
	route("GET /v1/operations/{id}/steps/{step}/result", consistent, s.getStepResult)
	route("GET /v1/cluster", anyNode, s.clusterStatus)
	route("POST /v1/cluster/remove", leaderOnly, s.removeNode)
	route("POST /v1/cluster/leave", anyNode, s.leave)
	route("GET /v1/version", anyNode, s.version)
	route("POST /v1/drills", leaderOnly, s.startDrill)
	route("GET /v1/schedules", anyNode, s.listSchedules)
	route("POST /v1/schedules", leaderOnly, s.createSchedule)
	route("GET /v1/schedules/{name}", anyNode, s.getSchedule)
	route("PUT /v1/schedules/{name}", leaderOnly, s.putSchedule)
	route("DELETE /v1/schedules/{name}", leaderOnly, s.removeSchedule)
	route("POST /v1/schedules/{name}/pause", leaderOnly, s.pauseSchedule(true))
	route("POST /v1/schedules/{name}/resume", leaderOnly, s.pauseSchedule(false))
	route("GET /v1/openapi.json", anyNode, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		_, err := w.Write(api.OpenAPISpec)
		return err
	})
	route("/v1/", anyNode, func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: no such endpoint: %s %s", storage.ErrNotFound, r.Method, r.URL.Path)
	})
	route("POST /internal/v1/jobs", anyNode, s.startJob)
	route("GET /internal/v1/jobs/{op}/{step}", anyNode, s.jobStatus)
	route("GET /internal/v1/fence", anyNode, s.fenceJournal)
	route("GET /internal/v1/jobs", anyNode, s.jobAudit)
	route("POST /internal/v1/fence", anyNode, s.admitEpoch)
	route("GET /internal/v1/raft-state", anyNode, s.raftState)
	route("POST /internal/v1/restore-preview", anyNode, s.restorePreview)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if s.pprof {
		// Profiling on demand (config debug_pprof): CPU, heap, goroutines.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.auth != nil {
		return s.auth(mux)
	}
	return mux
}

// routeToLeader forwards r to the leader when this node may not answer it
// itself, and reports whether it did. A consistent read on the leader
// first confirms leadership with a quorum.
func (s *Server) routeToLeader(w http.ResponseWriter, r *http.Request, where int) bool {
	switch {
	case where == anyNode:
		return false
	case where == consistent && r.URL.Query().Get("consistent") != "true":
		return false
	}
	if s.store.IsLeader() {
		if where == consistent {
			if err := s.store.VerifyLeader(r.Context()); err != nil {
				s.writeError(w, r, err)
				return true
			}
		}
		return false
	}
	if s.forwarder == nil || s.cluster == nil {
		return false // the handler answers ErrNotLeader
	}
	leader, err := s.cluster.LeaderURL()
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	// Read the (limited) body here, so a body over the limit is this
	// node's 413, never a failed forward that looks like a lost leader.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: %w", wire.ErrBadRequest, err))
		return true
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	s.forwarder.Forward(w, r, leader)
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeError translates error kinds into statuses, once, here.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	resp := api.ErrorResponse{Error: err.Error(), Code: api.CodeInternal}
	status := http.StatusInternalServerError
	var busy *fsm.BusyError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, wire.ErrBodyTooLarge), errors.As(err, &tooLarge), errors.Is(err, fsm.ErrEntryTooLarge):
		status, resp.Code = http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.As(err, &busy):
		status, resp.Code, resp.RunningOperationID = http.StatusConflict, api.CodeBusy, busy.RunningID
	case errors.Is(err, fsm.ErrIDConflict):
		status, resp.Code = http.StatusConflict, api.CodeConflict
	case errors.Is(err, wire.ErrOtherRepository) && !errors.Is(err, wire.ErrBadRequest):
		status, resp.Code = http.StatusConflict, api.CodeOtherRepository
	case errors.Is(err, wire.ErrBadRequest), errors.Is(err, fsm.ErrInvalidCommand):
		status, resp.Code = http.StatusBadRequest, api.CodeBadRequest
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, fsm.ErrUnknownOperation), errors.Is(err, fsm.ErrUnknownSchedule), errors.Is(err, wire.ErrUnknownNode):
		status, resp.Code = http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, wire.ErrStaleEpoch):
		status, resp.Code = http.StatusConflict, api.CodeStaleEpoch
	case errors.Is(err, wire.ErrNotLeader), errors.Is(err, wire.ErrUnknownOutcome), errors.Is(err, forward.ErrLoop):
		status, resp.Code = http.StatusServiceUnavailable, api.CodeNoLeader
		w.Header().Set("Retry-After", "1")
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	_ = writeJSON(w, status, resp)
}

// decodeBody reads a JSON body strictly: unknown fields and trailing data
// are errors. An empty body decodes as the zero value.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // limited by the route (bodyLimit)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: over %d bytes", wire.ErrBodyTooLarge, tooLarge.Limit)
		}
		return fmt.Errorf("%w: request body: %v", wire.ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body: trailing data after the JSON object", wire.ErrBadRequest)
	}
	return nil
}

// writeStarted answers a start request: 202 with a new operation, or 200
// with the one an earlier request with the same id started, marked
// "existing": true (a retry gets the same operation, even a finished one;
// nothing new was started).
func writeStarted(w http.ResponseWriter, op *fsm.Operation, existing bool) error {
	if existing {
		return writeJSON(w, http.StatusOK, api.StartedOperation{Operation: op, Existing: true})
	}
	return writeJSON(w, http.StatusAccepted, op)
}

func (s *Server) startBackup(w http.ResponseWriter, r *http.Request) error {
	var req api.StartBackupRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartBackup(r.Context(), req.ID)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) startRestore(w http.ResponseWriter, r *http.Request) error {
	var req api.StartRestoreRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartRestore(r.Context(), req.ID, req.BackupID, req.Target, req.RestoreOptions)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) startDelete(w http.ResponseWriter, r *http.Request) error {
	var req api.StartDeleteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartDelete(r.Context(), req.ID, req.BackupIDs)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) startGC(w http.ResponseWriter, r *http.Request) error {
	var req api.StartGCRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartGC(r.Context(), req.ID)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) startCleanup(w http.ResponseWriter, r *http.Request) error {
	var req api.StartCleanupRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartCleanup(r.Context(), req.ID, req.CleanupOptions)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

// cleanupPreview takes the policy as query parameters keep_last,
// keep_within (a duration) and min_keep; none means the configured policy.
func (s *Server) cleanupPreview(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var policy *storage.RetentionPolicy
	if q.Has("keep_last") || q.Has("keep_within") || q.Has("min_keep") {
		policy = &storage.RetentionPolicy{}
		var err error
		if policy.KeepLast, err = queryInt(r, "keep_last", 0, 1<<30); err != nil {
			return err
		}
		if policy.MinKeep, err = queryInt(r, "min_keep", 0, 1<<30); err != nil {
			return err
		}
		if v := q.Get("keep_within"); v != "" {
			if err := policy.KeepWithin.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("%w: keep_within=%q is not a duration such as 720h", wire.ErrBadRequest, v)
			}
		}
	}
	p, err := s.ops.CleanupPreview(r.Context(), policy)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) startVerify(w http.ResponseWriter, r *http.Request) error {
	var req api.StartVerifyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartVerify(r.Context(), req.ID, req.VerifyOptions)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) startRepair(w http.ResponseWriter, r *http.Request) error {
	var req api.StartRepairRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartRepair(r.Context(), req.ID, req.RepairOptions)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func queryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q is not a non-negative integer", wire.ErrBadRequest, name, v)
	}
	return min(n, max), nil
}

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 20, fsm.MaxFinishedOps)
	if err != nil {
		return err
	}
	ops := s.store.FSM().Operations(limit)
	if ops == nil {
		ops = []*fsm.Operation{}
	}
	for _, op := range ops {
		cutResults(op)
	}
	return writeJSON(w, http.StatusOK, api.OperationList{Operations: ops})
}

// getOperation answers at once, or with ?wait=D&revision=R long-polls until
// the operation's revision passes R, it finishes, or D elapses.
func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	var wait time.Duration
	var revision uint64
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%w: wait=%q is not a duration such as 30s", wire.ErrBadRequest, v)
		}
		wait = min(d, MaxWait)
	}
	if v := q.Get("revision"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: revision=%q is not a number", wire.ErrBadRequest, v)
		}
		revision = n
	}
	m := s.store.FSM()
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		changed := m.Changed() // before reading, so no change slips between
		op := m.Operation(id)
		if op == nil {
			return s.unknownOperation(w, r, id)
		}
		if wait == 0 || op.Revision > revision || op.State.Terminal() {
			cutResults(op)
			return writeJSON(w, http.StatusOK, op)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			cutResults(op)
			return writeJSON(w, http.StatusOK, op)
		}
	}
}

func (s *Server) listBackups(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	cursor := r.URL.Query().Get("cursor")
	if cursor != "" && !storage.ValidBackupID(cursor) {
		return fmt.Errorf("%w: invalid cursor %q", wire.ErrBadRequest, cursor)
	}
	list, next, err := s.ops.ListBackups(r.Context(), limit, cursor)
	if err != nil {
		return err
	}
	if list == nil {
		list = []storage.Summary{}
	}
	return writeJSON(w, http.StatusOK, api.BackupList{Backups: list, NextCursor: next})
}

func (s *Server) describeBackup(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !storage.ValidBackupID(id) {
		return fmt.Errorf("%w: invalid backup id %q", wire.ErrBadRequest, id)
	}
	m, err := s.catalog.GetManifest(r.Context(), id)
	if err != nil {
		return err
	}
	if files, _ := strconv.ParseBool(r.URL.Query().Get("files")); files {
		for i := range m.Nodes {
			if m.Nodes[i].Files, err = s.catalog.LoadFiles(r.Context(), &m.Nodes[i]); err != nil {
				return err
			}
		}
	}
	return writeJSON(w, http.StatusOK, api.BackupDetail{Summary: m.Summarize(), Manifest: m})
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) error {
	st := s.store.Status()
	epoch, coord := s.store.FSM().Epoch()
	out := api.ClusterStatus{
		NodeID: s.store.nodeID, State: st.State, LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr,
		Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: s.store.FSM().AppliedIndex(),
		LastContact: st.LastContact, Epoch: epoch, Coordinator: coord, Time: time.Now().UTC(),
		Members: []api.Member{},
	}
	byID := map[string]api.Member{}
	for _, srv := range st.Servers {
		byID[string(srv.ID)] = api.Member{
			ID: string(srv.ID), RaftAddr: string(srv.Address), Suffrage: srv.Suffrage.String(),
			Leader: string(srv.ID) == st.LeaderID,
		}
	}
	if s.cluster != nil {
		out.RepositoryID = s.cluster.RepoID()
		for _, m := range s.cluster.Members() {
			am, ok := byID[m.NodeID]
			if !ok && m.Status != gossip.StatusAlive {
				// Out of the Raft configuration and not alive: removed,
				// or left. Gossip on a node that was not the one to
				// remove it still remembers it for a while.
				continue
			}
			if !ok {
				am = api.Member{ID: m.NodeID, RaftAddr: m.RaftAddr}
			}
			am.Gossip, am.GossipAddr, am.HTTPAddr, am.Zone, am.Version, am.Since = string(m.Status), m.GossipAddr, m.HTTPAddr, m.Zone, m.Version, m.Since.UTC()
			am.RepositoryID, am.OtherRepository = m.RepoID, !s.cluster.sameRepository(m)
			byID[m.NodeID] = am
		}
	}
	for _, m := range byID {
		out.Members = append(out.Members, m)
	}
	slices.SortFunc(out.Members, func(a, b api.Member) int { return strings.Compare(a.ID, b.ID) })
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, api.Version{Version: Version, GoVersion: runtime.Version()})
}

// unknownOperation answers a request for an operation this node does not
// know: a follower may not have applied an operation the leader has just
// started (the client may have started it through us), so the leader has
// the last word; otherwise, or on the leader, it is unknown.
func (s *Server) unknownOperation(w http.ResponseWriter, r *http.Request, id string) error {
	if !s.store.IsLeader() && s.forwarder != nil && s.cluster != nil && !forward.Forwarded(r) {
		if leader, err := s.cluster.LeaderURL(); err == nil {
			s.forwarder.Forward(w, r, leader)
			return nil
		}
	}
	return fmt.Errorf("%w: operation %s", fsm.ErrUnknownOperation, id)
}
