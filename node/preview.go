package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// Restore previews: what a restore would do on each node, asked of every
// node before anything is written. A preview only reads (the repository,
// and the target's metadata), so it takes no fencing epoch and no job
// slot: it may run beside another operation's steps.

// previewRestore asks the node at base for its preview.
func (p *peerClient) previewRestore(ctx context.Context, base string, req wire.PreviewRequest) (api.NodeRestorePreview, error) {
	var out api.NodeRestorePreview
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/internal/v1/restore-preview", bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := p.Do(hreq)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode == http.StatusBadRequest {
			return out, fmt.Errorf("%w: %s", wire.ErrBadRequest, e.Error)
		}
		return out, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
	}
	return out, json.Unmarshal(b, &out)
}

// restorePreview answers POST /internal/v1/restore-preview for this node.
func (s *Server) restorePreview(w http.ResponseWriter, r *http.Request) error {
	if s.previewer == nil {
		return fmt.Errorf("%w: this agent runs no cluster", wire.ErrBadRequest)
	}
	var req wire.PreviewRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	p, err := s.previewer.PreviewRestore(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

// previewRestores answers POST /v1/restores/preview: a restore's dry run.
func (s *Server) previewRestores(w http.ResponseWriter, r *http.Request) error {
	var req api.StartRestoreRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	p, err := s.ops.PreviewRestore(r.Context(), req.BackupID, req.Target, req.RestoreOptions)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}
