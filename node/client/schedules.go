package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/crayfish-backup/crayfish/node/api"
)

// StartDrill starts a restore drill (POST /v1/drills).
func (c *Client) StartDrill(ctx context.Context, req api.StartDrillRequest) (*api.Operation, error) {
	return c.start(ctx, "/v1/drills", req)
}

// SetSchedule creates a schedule (POST /v1/schedules), or with replace
// defines or redefines it (PUT /v1/schedules/{name}).
func (c *Client) SetSchedule(ctx context.Context, req api.ScheduleRequest, replace bool) (*api.Schedule, error) {
	method, path := http.MethodPost, "/v1/schedules"
	if replace {
		method, path = http.MethodPut, "/v1/schedules/"+url.PathEscape(req.Name)
	}
	var sc api.Schedule
	if err := c.do(ctx, method, path, nil, req, &sc, 0); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Schedules lists the schedules (GET /v1/schedules).
func (c *Client) Schedules(ctx context.Context) (*api.ScheduleList, error) {
	var list api.ScheduleList
	if err := c.do(ctx, http.MethodGet, "/v1/schedules", nil, nil, &list, 0); err != nil {
		return nil, err
	}
	return &list, nil
}

// RemoveSchedule deletes a schedule (DELETE /v1/schedules/{name}).
func (c *Client) RemoveSchedule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/schedules/"+url.PathEscape(name), nil, nil, nil, 0)
}

// PauseSchedule pauses or resumes a schedule.
func (c *Client) PauseSchedule(ctx context.Context, name string, pause bool) (*api.Schedule, error) {
	verb := "resume"
	if pause {
		verb = "pause"
	}
	var sc api.Schedule
	if err := c.do(ctx, http.MethodPost, "/v1/schedules/"+url.PathEscape(name)+"/"+verb, nil, nil, &sc, 0); err != nil {
		return nil, err
	}
	return &sc, nil
}
