package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// PreviewFunc asks one node for its preview.
type PreviewFunc func(ctx context.Context, node string, req wire.PreviewRequest) (api.NodeRestorePreview, error)

// previewTimeout bounds one node's preview: a walk of the target's
// metadata, no content read.
const previewTimeout = 5 * time.Minute

// checkTimeout bounds one node's target check before a restore starts: a
// node that does not answer in time checks the target itself later.
const checkTimeout = 5 * time.Second

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
	g.SetLimit(maxNodeCalls)
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
