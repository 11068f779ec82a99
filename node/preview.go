package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// Restore previews: what a restore would do on each node, asked of every
// node before anything is written. A preview only reads (the repository,
// and the target's metadata), so it takes no fencing epoch and no job
// slot: it may run beside another operation's steps.

// previewFunc asks one node for its preview.
type previewFunc func(ctx context.Context, node string, req wire.PreviewRequest) (api.NodeRestorePreview, error)

// previewTimeout bounds one node's preview: a walk of the target's
// metadata, no content read.
const previewTimeout = 5 * time.Minute

// checkTimeout bounds one node's target check before a restore starts: a
// node that does not answer in time checks the target itself later.
const checkTimeout = 5 * time.Second

// PreviewRestore says what Restore would do with req on this node,
// changing nothing: the target is checked as the restore checks it, then
// the backup's file list is compared with the target's metadata.
func (w *LocalWorker) PreviewRestore(ctx context.Context, preq wire.PreviewRequest) (api.NodeRestorePreview, error) {
	req := preq.Restore
	out := api.NodeRestorePreview{Node: w.nodeID, Mode: "mirror"}
	if req.Cleanup {
		return out, fmt.Errorf("%w: a preview covers restores into directories only", wire.ErrBadRequest)
	}
	// The manifest names the plugin that says where the files go; the
	// file list is read only for a full preview (a check before a restore
	// starts must answer within seconds).
	m, err := w.repo.GetSnapshot(ctx, req.BackupID)
	if err != nil {
		return out, err
	}
	p, err := w.plugins.For(m.Plugin)
	if err != nil {
		return out, err
	}
	step := plugin.RestoreStep{BackupID: req.BackupID, Input: req.Plugin, Target: req.Target}
	stage, err := p.Stage(step)
	if err != nil {
		return out, err
	}
	if stage.Into == "" {
		return out, fmt.Errorf("%w: backup %s was taken by the %s plugin; a dry run previews restores into directories only", wire.ErrBadRequest, req.BackupID, m.Plugin)
	}
	target := stage.Into
	if req.Target != "" {
		if err := w.guard.check(target); err != nil {
			return out, err
		}
	}
	if stage.KeepExtra {
		out.Mode = "additive"
	}
	out.Target = target
	if real, err := realPath(target); err == nil {
		out.RealTarget = real
	}
	if preq.CheckOnly {
		return out, nil
	}
	_, source, files, err := w.restoreFiles(ctx, req)
	if err != nil {
		return out, err
	}
	out.SourceNode = source
	if files, err = tree.SelectEntries(files, stage.Include, stage.Exclude, stage.Select); err != nil {
		return out, err
	}
	plan, err := tree.PlanRestore(ctx, target, files, tree.RestoreOptions{Include: stage.Include, Exclude: stage.Exclude, Select: stage.Select, KeepExtra: stage.KeepExtra})
	if err != nil {
		return out, err
	}
	out.Create, out.Overwrite, out.Unchanged = plan.Create, plan.Overwrite, plan.Unchanged
	out.Delete, out.DeletePaths = plan.Delete, plan.DeletePaths
	out.Dirs, out.Symlinks, out.DownloadBytes = plan.Dirs, plan.Symlinks, plan.DownloadBytes
	if out.FreeBytes, err = freeBytes(target); err != nil {
		return out, err
	}
	out.Fits = uint64(plan.DownloadBytes) <= out.FreeBytes
	return out, nil
}

// PreviewRestore answers a dry run: the restore request is checked and
// planned exactly as StartRestore would, then every node it involves says
// what it would do. Nothing is started or written.
func (o *Operations) PreviewRestore(ctx context.Context, backupID, target string, opts api.RestoreOptions) (*api.RestorePreview, error) {
	rp, err := o.planRestore(ctx, backupID, target, opts)
	if err != nil {
		return nil, err
	}
	if rp.staged {
		return nil, fmt.Errorf("%w: backup %s was taken by the %s plugin; a dry run previews restores into directories only", wire.ErrBadRequest, rp.backupID, rp.manifest.Plugin)
	}
	out := &api.RestorePreview{BackupID: rp.backupID}
	out.Nodes, err = o.askNodes(ctx, rp, false)
	return out, err
}

// preflightTargets checks the target on every node a restore writes to
// before it starts: a node that refuses it fails the request (400, naming
// the node and the conflict). A node that cannot be asked now checks the
// target itself before its first write.
func (o *Operations) preflightTargets(ctx context.Context, rp *plannedRestore) error {
	res, err := o.askNodes(ctx, rp, true)
	if err != nil {
		return err
	}
	var refused []string
	for _, r := range res {
		if r.Error != "" {
			refused = append(refused, r.Error)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s", wire.ErrBadRequest, strings.Join(refused, "; "))
	}
	return nil
}

// askNodes gets every assigned node's preview side by side, sorted by
// node. A node that refuses the request (a 400: an unsafe target, no
// root) has its reason in Error; with checkOnly, a node that cannot be
// reached is left out, otherwise it is listed with the reason.
func (o *Operations) askNodes(ctx context.Context, rp *plannedRestore, checkOnly bool) ([]api.NodeRestorePreview, error) {
	if o.preview == nil {
		return nil, fmt.Errorf("%w: this agent cannot ask nodes for previews", wire.ErrBadRequest)
	}
	nodes := make([]string, 0, len(rp.assign))
	for n := range rp.assign {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	out := make([]api.NodeRestorePreview, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, n := range nodes {
		in := rp.assign[n]
		req := wire.RestoreRequest{BackupID: rp.backupID, Target: in.Target, SourceNode: in.SourceNode, Clear: in.Clear, Plugin: in.Plugin}
		g.Go(func() error {
			timeout := previewTimeout
			if checkOnly {
				timeout = checkTimeout
			}
			pctx, cancel := context.WithTimeout(gctx, timeout)
			defer cancel()
			p, err := o.preview(pctx, n, wire.PreviewRequest{Restore: req, CheckOnly: checkOnly})
			p.Node = n
			switch {
			case err == nil:
			case errors.Is(err, wire.ErrBadRequest):
				p.Error = fmt.Sprintf("node %s: %v", n, err)
			case checkOnly:
				o.engine.log.Warn("could not check a restore target on a node before starting; the node checks it before writing", "node", n, "err", err)
			default:
				p.Error = fmt.Sprintf("node %s: %v", n, err)
			}
			out[i] = p
			return nil
		})
	}
	return out, g.Wait()
}

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
	resp, err := p.do(hreq)
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
