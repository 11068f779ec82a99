package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

func (c *Client) start(ctx context.Context, path string, req any) (*api.Operation, error) {
	var op api.Operation
	if err := c.do(ctx, http.MethodPost, path, nil, req, &op, 0); err != nil {
		return nil, err
	}
	return &op, nil
}

// StartGC starts a garbage collection (POST /v1/gc).
func (c *Client) StartGC(ctx context.Context, req api.StartGCRequest) (*api.Operation, error) {
	return c.start(ctx, "/v1/gc", req)
}

// StartCleanup starts a cleanup (POST /v1/cleanups).
func (c *Client) StartCleanup(ctx context.Context, req api.StartCleanupRequest) (*api.Operation, error) {
	return c.start(ctx, "/v1/cleanups", req)
}

// StartVerify starts a repository check (POST /v1/verifications).
func (c *Client) StartVerify(ctx context.Context, req api.StartVerifyRequest) (*api.Operation, error) {
	return c.start(ctx, "/v1/verifications", req)
}

// StartRepair starts a repair of the index, packs or snapshots (POST
// /v1/repairs).
func (c *Client) StartRepair(ctx context.Context, req api.StartRepairRequest) (*api.Operation, error) {
	return c.start(ctx, "/v1/repairs", req)
}

// CleanupPreview asks what a cleanup would delete (GET
// /v1/cleanups/preview); a nil policy means the agent's configured one.
func (c *Client) CleanupPreview(ctx context.Context, policy *storage.RetentionPolicy) (*api.CleanupPreview, error) {
	q := url.Values{}
	if policy != nil {
		q.Set("keep_last", strconv.Itoa(policy.KeepLast))
		q.Set("min_keep", strconv.Itoa(policy.MinKeep))
		if policy.KeepWithin > 0 {
			q.Set("keep_within", time.Duration(policy.KeepWithin).String())
		}
	}
	var p api.CleanupPreview
	if err := c.do(ctx, http.MethodGet, "/v1/cleanups/preview", q, nil, &p, 0); err != nil {
		return nil, err
	}
	return &p, nil
}
