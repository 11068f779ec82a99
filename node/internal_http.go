package node

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// maxInternalBodyBytes bounds a node step's start request: an upload
// step carries the chunks the node leaves to others (cross-node dedup),
// at most wire.MaxSkipChunks of 67 bytes of JSON each (3.4 MB). Every other
// call is small (maxBodyBytes).
const maxInternalBodyBytes = 4 << 20

// startJob starts or attaches to a step on this node (POST /internal/v1/jobs).
func (s *Server) startJob(w http.ResponseWriter, r *http.Request) error {
	if s.jobs == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	var req wire.StepRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return fmt.Errorf("%w: step request without a step name", wire.ErrBadRequest)
	}
	st, err := s.jobs.Start(req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// jobStatus long-polls a step on this node (GET
// /internal/v1/jobs/{op}/{step}?epoch=E&wait=D): 404 if the node does not
// know it (it restarted), 409 if epoch is stale.
func (s *Server) jobStatus(w http.ResponseWriter, r *http.Request) error {
	if s.jobs == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	step, err := strconv.Atoi(r.PathValue("step"))
	if err != nil {
		return fmt.Errorf("%w: step %q", wire.ErrBadRequest, r.PathValue("step"))
	}
	epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: epoch %q", wire.ErrBadRequest, r.URL.Query().Get("epoch"))
	}
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		return err
	}
	st, ok, err := s.jobs.Status(r.Context(), wire.StepRef{OpID: r.PathValue("op"), Epoch: epoch, Step: step}, wait)
	if err != nil {
		return err
	}
	if !ok {
		return writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: "no such job on this node", Code: api.CodeNotFound})
	}
	return writeJSON(w, http.StatusOK, st)
}

// fenceJournal lists the coordinator calls this node admitted and counts
// the stale ones it refused.
func (s *Server) fenceJournal(w http.ResponseWriter, r *http.Request) error {
	if s.fence == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	return writeJSON(w, http.StatusOK, s.fence.Journal())
}

// jobAudit lists the intervals of the jobs this node ran.
func (s *Server) jobAudit(w http.ResponseWriter, r *http.Request) error {
	if s.jobs == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	return writeJSON(w, http.StatusOK, s.jobs.Audit())
}

func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: wait %q", wire.ErrBadRequest, v)
	}
	return min(d, MaxWait), nil
}

// FenceRequest is the body of POST /internal/v1/fence.
type FenceRequest struct {
	Epoch uint64 `json:"epoch"`
}

// admitEpoch raises this node's fencing epoch: a new coordinator calls it
// on every node as soon as it has claimed its epoch.
func (s *Server) admitEpoch(w http.ResponseWriter, r *http.Request) error {
	if s.fence == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	var req FenceRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := s.fence.Admit(wire.StepRef{OpID: "-", Epoch: req.Epoch, Step: -1}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, FenceRequest{Epoch: s.fence.Accepted()})
}

// raftState tells a bootstrapping peer whether this node is in a cluster.
func (s *Server) raftState(w http.ResponseWriter, r *http.Request) error {
	out := raftStateReply{HasState: s.store.HasState()}
	if servers, err := s.store.Servers(); err == nil {
		for _, srv := range servers {
			out.Servers = append(out.Servers, raftStateServer{ID: string(srv.ID), Address: string(srv.Address)})
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// removeNode takes a member that is not alive out of the cluster.
func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) error {
	if s.cluster == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	var req api.RemoveNodeRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Node == "" {
		return fmt.Errorf("%w: node must be given", wire.ErrBadRequest)
	}
	if !s.store.IsLeader() {
		return wire.ErrNotLeader
	}
	if err := s.cluster.Remove(req.Node); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"removed": req.Node})
}

// leave makes the answering node leave the cluster for good; the agent
// keeps running until stopped but takes no part in operations.
func (s *Server) leave(w http.ResponseWriter, r *http.Request) error {
	if s.cluster == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	if err := s.cluster.Leave(); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"left": s.store.nodeID})
}
