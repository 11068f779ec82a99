package worker

import (
	"context"
	"fmt"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
)

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
	m, err := w.repo.GetManifest(ctx, req.BackupID)
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
	if m, err = w.restoreManifest(ctx, req); err != nil {
		return out, err
	}
	source, files, err := w.nodeFiles(ctx, req, m)
	if err != nil {
		return out, err
	}
	out.SourceNode = source
	if files, err = tree.SelectEntries(tree.Subtree(files, stage.From), stage.Include, stage.Exclude, stage.Select); err != nil {
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
