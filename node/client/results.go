package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/crayfish-backup/crayfish/node/api"
)

// StepResultPage returns one page of a step's result (GET
// /v1/operations/{id}/steps/{n}/result): cursor "" is the first page,
// limit <= 0 leaves the count to the agent.
func (c *Client) StepResultPage(ctx context.Context, id string, step int, cursor string, limit int) (*api.StepResultPage, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p api.StepResultPage
	path := "/v1/operations/" + url.PathEscape(id) + "/steps/" + strconv.Itoa(step) + "/result"
	if err := c.do(ctx, http.MethodGet, path, q, nil, &p, 0); err != nil {
		return nil, err
	}
	return &p, nil
}

// maxResultPages guards against an agent whose cursors never end.
const maxResultPages = 1 << 16

// StepResult follows the pages of a step's result and returns it whole:
// the first page's object with every later page's items appended to its
// lists.
func (c *Client) StepResult(ctx context.Context, id string, step, limit int) (json.RawMessage, error) {
	p, err := c.StepResultPage(ctx, id, step, "", limit)
	if err != nil {
		return nil, err
	}
	if p.NextCursor == "" {
		return p.Result, nil
	}
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(p.Result, &whole); err != nil {
		return nil, fmt.Errorf("page of step %d of %s: %w", step, id, err)
	}
	lists := map[string][]json.RawMessage{}
	add := func(obj map[string]json.RawMessage) error {
		for k, v := range obj {
			if v = bytes.TrimSpace(v); len(v) == 0 || v[0] != '[' {
				continue
			}
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				return err
			}
			lists[k] = append(lists[k], items...)
		}
		return nil
	}
	if err := add(whole); err != nil {
		return nil, err
	}
	for pages := 1; p.NextCursor != ""; pages++ {
		if pages >= maxResultPages {
			return nil, fmt.Errorf("step %d of %s: over %d pages", step, id, maxResultPages)
		}
		cursor := p.NextCursor
		if p, err = c.StepResultPage(ctx, id, step, cursor, limit); err != nil {
			return nil, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p.Result, &obj); err != nil {
			return nil, fmt.Errorf("page %q of step %d of %s: %w", cursor, step, id, err)
		}
		if err := add(obj); err != nil {
			return nil, err
		}
	}
	for k, items := range lists {
		if items == nil {
			items = []json.RawMessage{}
		}
		b, err := json.Marshal(items)
		if err != nil {
			return nil, err
		}
		whole[k] = b
	}
	return json.Marshal(whole)
}

// FullResults replaces every step result op was served cut (marked
// ResultPaged) with the whole result, following its pages.
func (c *Client) FullResults(ctx context.Context, op *api.Operation) error {
	for i := range op.Steps {
		if op.Steps[i].ResultPaged == nil {
			continue
		}
		res, err := c.StepResult(ctx, op.ID, i, api.MaxPageItems)
		if err != nil {
			return err
		}
		op.Steps[i].Result, op.Steps[i].ResultPaged = res, nil
	}
	return nil
}
