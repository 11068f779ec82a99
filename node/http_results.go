package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// Large step results cross the API in pages (docs/api.md, "Large step
// results"): an operation is served with each result over
// api.InlineResultBytes cut to the first items of its lists and marked,
// and GET /v1/operations/{id}/steps/{n}/result pages the whole of one.
// A result's lists are its top-level fields whose values are arrays.

// splitResult splits a recorded result (a JSON object) into its lists, by
// name in order, and its other fields.
func splitResult(raw json.RawMessage) (lists map[string][]json.RawMessage, names []string, rest map[string]json.RawMessage, err error) {
	if err := json.Unmarshal(raw, &rest); err != nil {
		return nil, nil, nil, fmt.Errorf("step result is not a JSON object: %w", err)
	}
	lists = map[string][]json.RawMessage{}
	for k, v := range rest {
		if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '[' {
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				return nil, nil, nil, err
			}
			lists[k] = items
			names = append(names, k)
			delete(rest, k)
		}
	}
	slices.Sort(names)
	return lists, names, rest, nil
}

// cutResults cuts every large result of op (a copy) to the first items
// of each list, marking it.
func cutResults(op *fsm.Operation) {
	if op == nil {
		return
	}
	for i := range op.Steps {
		st := &op.Steps[i]
		if len(st.Result) <= api.InlineResultBytes {
			continue
		}
		lists, _, rest, err := splitResult(st.Result)
		if err != nil {
			continue // not an object: served whole
		}
		mark := &fsm.ResultPaged{Bytes: len(st.Result), Lists: map[string]int{}}
		for k, items := range lists {
			mark.Lists[k] = len(items)
			b, err := json.Marshal(items[:min(len(items), api.InlineResultItems)])
			if err != nil {
				return
			}
			rest[k] = b
		}
		b, err := json.Marshal(rest)
		if err != nil {
			continue
		}
		st.Result, st.ResultPaged = b, mark
	}
}

// resultPage returns the page of a recorded result that starts at cursor
// ("" or "<list>:<index>"): up to limit items (and about
// api.MaxPageBytes, at least one) of its lists in the order of their
// names, the other fields on the first page only.
func resultPage(raw json.RawMessage, cursor string, limit int) (api.StepResultPage, error) {
	page := api.StepResultPage{Bytes: len(raw), Result: json.RawMessage("null")}
	if len(raw) == 0 {
		if cursor != "" {
			return page, fmt.Errorf("%w: cursor %q: the step recorded no result", wire.ErrBadRequest, cursor)
		}
		return page, nil
	}
	lists, names, rest, err := splitResult(raw)
	if err != nil {
		if cursor != "" {
			return page, fmt.Errorf("%w: cursor %q: %v", wire.ErrBadRequest, cursor, err)
		}
		page.Result = raw // not an object: one page
		return page, nil
	}
	page.Lists = map[string]int{}
	for k, items := range lists {
		page.Lists[k] = len(items)
	}
	li, at := 0, 0
	if cursor == "" {
		// The first page: every other field.
	} else {
		name, idx, ok := strings.Cut(cursor, ":")
		n, err := strconv.Atoi(idx)
		li = slices.Index(names, name)
		if !ok || err != nil || li < 0 || n < 0 || n > len(lists[name]) {
			return page, fmt.Errorf("%w: cursor %q is not one this result gave", wire.ErrBadRequest, cursor)
		}
		at = n
		rest = map[string]json.RawMessage{}
	}
	taken, size := 0, 0
	for ; li < len(names) && taken < limit && (taken == 0 || size < api.MaxPageBytes); li, at = li+1, 0 {
		items := lists[names[li]]
		end := at
		for end < len(items) && taken < limit && (taken == 0 || size+len(items[end]) <= api.MaxPageBytes) {
			size += len(items[end]) + 1
			taken++
			end++
		}
		if end > at || at == 0 && cursor == "" {
			b, err := json.Marshal(items[at:end])
			if err != nil {
				return page, err
			}
			rest[names[li]] = b
		}
		if end < len(items) {
			page.NextCursor = names[li] + ":" + strconv.Itoa(end)
			break
		}
	}
	if page.NextCursor == "" && li < len(names) {
		page.NextCursor = names[li] + ":0"
	}
	b, err := json.Marshal(rest)
	if err != nil {
		return page, err
	}
	page.Result = b
	return page, nil
}

// getStepResult serves one page of a step's result (GET
// /v1/operations/{id}/steps/{n}/result?cursor=C&limit=L).
func (s *Server) getStepResult(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	n, err := strconv.Atoi(r.PathValue("step"))
	if err != nil || n < 0 {
		return fmt.Errorf("%w: step %q is not a step number", wire.ErrBadRequest, r.PathValue("step"))
	}
	limit, err := queryInt(r, "limit", api.DefaultPageItems, api.MaxPageItems)
	if err != nil {
		return err
	}
	limit = max(limit, 1)
	op := s.store.FSM().Operation(id)
	if op == nil {
		return s.unknownOperation(w, r, id)
	}
	if n >= len(op.Steps) {
		return fmt.Errorf("%w: operation %s has %d steps, no step %d", fsm.ErrUnknownOperation, id, len(op.Steps), n)
	}
	st := op.Steps[n]
	page, err := resultPage(st.Result, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		return err
	}
	page.OperationID, page.Step, page.Name, page.Node = op.ID, n, st.Name, st.Node
	return writeJSON(w, http.StatusOK, page)
}
