package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/api"
)

const (
	// MaxWait is the longest long-poll the agent accepts; WaitOperation
	// clamps longer waits to it.
	MaxWait = 60 * time.Second
	// DefaultWait is the long-poll wait WaitFinished uses per call.
	DefaultWait = 30 * time.Second

	minBackoff = 200 * time.Millisecond
	maxBackoff = 5 * time.Second

	// maxErrorBody bounds how much of a non-2xx body is read.
	maxErrorBody = 64 << 10
)

// Client talks to one crayfish agent. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client

	// Timeout bounds each HTTP call (zero: no bound beyond the context).
	// A long-poll call gets Timeout plus its wait. It never bounds
	// WaitFinished as a whole: use its context for that. Set it before
	// the first call.
	Timeout time.Duration
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
}

// New returns a client for the agent at baseURL (for example
// "http://127.0.0.1:7300"). A nil httpClient means a default client
// without an overall timeout. If httpClient has a Timeout it must exceed
// the long-poll waits used (DefaultWait for WaitFinished); prefer
// Client.Timeout, which accounts for them.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: httpClient}
}

// BaseURL returns the agent URL the client was made for, without a
// trailing slash.
func (c *Client) BaseURL() string { return c.base }

// StartBackup starts a backup of every node (POST /v1/backups). It returns
// the new operation, or the existing one when req.ID was already used for
// a backup.
func (c *Client) StartBackup(ctx context.Context, req api.StartBackupRequest) (*api.Operation, error) {
	var op api.Operation
	if err := c.do(ctx, http.MethodPost, "/v1/backups", nil, req, &op, 0); err != nil {
		return nil, err
	}
	return &op, nil
}

// StartRestore starts a restore (POST /v1/restores). An empty
// req.BackupID restores the latest backup.
func (c *Client) StartRestore(ctx context.Context, req api.StartRestoreRequest) (*api.Operation, error) {
	var op api.Operation
	if err := c.do(ctx, http.MethodPost, "/v1/restores", nil, req, &op, 0); err != nil {
		return nil, err
	}
	return &op, nil
}

// PreviewRestore asks what the restore req would do on each node (POST
// /v1/restores/preview); nothing is started or written.
func (c *Client) PreviewRestore(ctx context.Context, req api.StartRestoreRequest) (*api.RestorePreview, error) {
	var p api.RestorePreview
	if err := c.do(ctx, http.MethodPost, "/v1/restores/preview", nil, req, &p, 0); err != nil {
		return nil, err
	}
	return &p, nil
}

// StartDelete starts the deletion of backups (POST /v1/deletions).
func (c *Client) StartDelete(ctx context.Context, req api.StartDeleteRequest) (*api.Operation, error) {
	if req.BackupIDs == nil {
		req.BackupIDs = []string{} // the server answers 400, not a decode error
	}
	var op api.Operation
	if err := c.do(ctx, http.MethodPost, "/v1/deletions", nil, req, &op, 0); err != nil {
		return nil, err
	}
	return &op, nil
}

// Operation returns the current state of an operation
// (GET /v1/operations/{id}).
func (c *Client) Operation(ctx context.Context, id string) (*api.Operation, error) {
	var op api.Operation
	if err := c.do(ctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id), nil, nil, &op, 0); err != nil {
		return nil, err
	}
	return &op, nil
}

// Operations lists the latest operations, newest first
// (GET /v1/operations). limit <= 0 leaves the count to the agent.
func (c *Client) Operations(ctx context.Context, limit int) (*api.OperationList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var l api.OperationList
	if err := c.do(ctx, http.MethodGet, "/v1/operations", q, nil, &l, 0); err != nil {
		return nil, err
	}
	return &l, nil
}

// WaitOperation makes one long-poll call: the agent answers as soon as the
// operation's Revision is greater than revision, or it is finished, or
// wait has elapsed (then with the unchanged state). wait is clamped to
// MaxWait; wait <= 0 answers at once.
func (c *Client) WaitOperation(ctx context.Context, id string, revision uint64, wait time.Duration) (*api.Operation, error) {
	wait = min(wait, MaxWait)
	q := url.Values{}
	q.Set("revision", strconv.FormatUint(revision, 10))
	if wait > 0 {
		q.Set("wait", wait.String())
	} else {
		wait = 0
	}
	var op api.Operation
	if err := c.do(ctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id), q, nil, &op, wait); err != nil {
		return nil, err
	}
	return &op, nil
}

// WaitFinished follows an operation with long-polls of DefaultWait until
// its state is terminal, and returns the final operation. onChange (may be
// nil) is called with the first answer and with every answer whose
// revision differs from the previous one. Transient failures (see
// IsTransient) are retried with a backoff from 200ms to 5s until ctx ends,
// since the agent may be restarting; other errors are returned at once.
// When ctx ends first the error wraps ctx.Err().
func (c *Client) WaitFinished(ctx context.Context, id string, onChange func(*api.Operation)) (*api.Operation, error) {
	var (
		revision uint64
		seen     bool
		backoff  = minBackoff
		lastErr  error
	)
	for {
		start := time.Now()
		op, err := c.WaitOperation(ctx, id, revision, DefaultWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctxError(ctx, lastErr)
			}
			if !IsTransient(err) {
				return nil, err
			}
			lastErr = err
			if err := wait.Sleep(ctx, backoff); err != nil {
				return nil, ctxError(ctx, lastErr)
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		lastErr = nil
		changed := !seen || op.Revision != revision
		seen = true
		revision = op.Revision
		if changed && onChange != nil {
			onChange(op)
		}
		if op.State.Terminal() {
			return op, nil
		}
		if changed {
			backoff = minBackoff
			continue
		}
		// Unchanged and not finished: the wait elapsed. An answer that
		// came back much earlier than the wait means the agent does not
		// honour the long-poll; back off rather than spin.
		if time.Since(start) < DefaultWait/2 {
			if err := wait.Sleep(ctx, backoff); err != nil {
				return nil, ctxError(ctx, nil)
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// Backups lists one page of backups, newest first (GET /v1/backups).
// Pass the returned NextCursor as cursor for the next page; an empty
// NextCursor means the last page. limit <= 0 leaves the page size to the
// agent.
func (c *Client) Backups(ctx context.Context, limit int, cursor string) (*api.BackupList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var l api.BackupList
	if err := c.do(ctx, http.MethodGet, "/v1/backups", q, nil, &l, 0); err != nil {
		return nil, err
	}
	return &l, nil
}

// Backup describes one backup (GET /v1/backups/{id}); with files the
// manifest carries each node's file list.
func (c *Client) Backup(ctx context.Context, id string, files bool) (*api.BackupDetail, error) {
	q := url.Values{}
	if files {
		q.Set("files", "true")
	}
	var d api.BackupDetail
	if err := c.do(ctx, http.MethodGet, "/v1/backups/"+url.PathEscape(id), q, nil, &d, 0); err != nil {
		return nil, err
	}
	return &d, nil
}

// Cluster returns the Raft view of the answering agent (GET /v1/cluster).
func (c *Client) Cluster(ctx context.Context) (*api.ClusterStatus, error) {
	var s api.ClusterStatus
	if err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &s, 0); err != nil {
		return nil, err
	}
	return &s, nil
}

// RemoveNode takes a member that is not alive out of the cluster (POST
// /v1/cluster/remove).
func (c *Client) RemoveNode(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodPost, "/v1/cluster/remove", nil, api.RemoveNodeRequest{Node: node}, &map[string]string{}, 0)
}

// Leave makes the answering agent leave its cluster for good (POST
// /v1/cluster/leave).
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/cluster/leave", nil, struct{}{}, &map[string]string{}, 0)
}

// Version returns the agent's version (GET /v1/version).
func (c *Client) Version(ctx context.Context) (*api.Version, error) {
	var v api.Version
	if err := c.do(ctx, http.MethodGet, "/v1/version", nil, nil, &v, 0); err != nil {
		return nil, err
	}
	return &v, nil
}

// do sends one request with an optional JSON body and decodes a 2xx JSON
// answer into out. extra lengthens the per-call timeout (long-polls).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any, extra time.Duration) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout+extra)
		defer cancel()
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// decodeError turns a non-2xx answer into an *APIError. Bodies that are not
// an api.ErrorResponse (a proxy, a panic page) still give an error whose
// Code is derived from the status where that is unambiguous.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var er api.ErrorResponse
	if json.Unmarshal(b, &er) == nil && (er.Error != "" || er.Code != "") {
		e.Code, e.Message, e.RunningOperationID = er.Code, er.Error, er.RunningOperationID
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	if e.Code == "" {
		e.Code = codeForStatus(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.CodeBadRequest
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusInternalServerError:
		return api.CodeInternal
	}
	return "" // 409 is busy or conflict, 503 may come from a proxy
}

// ctxError reports the end of ctx, with the last transient error if any so
// that "agent unreachable" is not hidden behind "context canceled".
func ctxError(ctx context.Context, last error) error {
	if last != nil {
		return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
	}
	return ctx.Err()
}
