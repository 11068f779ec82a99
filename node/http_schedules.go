package node

import (
	"fmt"
	"net/http"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

func (s *Server) startDrill(w http.ResponseWriter, r *http.Request) error {
	var req api.StartDrillRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ops, err := s.ops.WithCallback(req.CallbackURL)
	if err != nil {
		return err
	}
	op, existing, err := ops.StartDrill(r.Context(), req.ID, req.DrillOptions)
	if err != nil {
		return err
	}
	return writeStarted(w, op, existing)
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, api.ScheduleList{Schedules: s.ops.Schedules(time.Now())})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) error {
	sc := s.store.FSM().Schedule(r.PathValue("name"))
	if sc == nil {
		return fmt.Errorf("%w: schedule %q", fsm.ErrUnknownSchedule, r.PathValue("name"))
	}
	return writeJSON(w, http.StatusOK, s.ops.ScheduleStatus(sc, time.Now()))
}

// createSchedule: 201 with the new schedule, 200 when the same
// definition is there already, 409 when another is.
func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) error {
	var req api.ScheduleRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	sc, existing, err := s.ops.SetSchedule(r.Context(), req.ScheduleSpec, req.Paused, true)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if existing {
		status = http.StatusOK
	}
	return writeJSON(w, status, s.ops.ScheduleStatus(sc, time.Now()))
}

// putSchedule defines or redefines the schedule of the path's name; the
// run state (last slot) is kept.
func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) error {
	var req api.ScheduleRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = r.PathValue("name")
	}
	if req.Name != r.PathValue("name") {
		return fmt.Errorf("%w: the body names schedule %q, the path %q", wire.ErrBadRequest, req.Name, r.PathValue("name"))
	}
	sc, _, err := s.ops.SetSchedule(r.Context(), req.ScheduleSpec, req.Paused, false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.ops.ScheduleStatus(sc, time.Now()))
}

func (s *Server) removeSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.ops.RemoveSchedule(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sc)
}

func (s *Server) pauseSchedule(paused bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		sc, err := s.ops.PauseSchedule(r.Context(), r.PathValue("name"), paused)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, s.ops.ScheduleStatus(sc, time.Now()))
	}
}
