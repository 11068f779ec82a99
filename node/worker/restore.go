package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// stagingDir holds a restore's downloads that a plugin acts on, until the
// restore's last step removes it.
func (w *LocalWorker) stagingDir(opID string) string {
	return filepath.Join(w.cfg.DataDir, "restore", opID)
}

// Restore runs one restore step: the backup's plugin says what to
// download and where (a target, the root, or the staging dir), the files
// are made equal to the backup there (files already right are kept, so a
// repeat after a crash is cheap), then the plugin acts on them.
func (w *LocalWorker) Restore(ctx context.Context, ref wire.StepRef, req wire.RestoreRequest, progress wire.ProgressFunc) (wire.RestoreResult, error) {
	if err := w.fence.Admit(ref); err != nil {
		return wire.RestoreResult{}, err
	}
	if req.Drill {
		return w.drill(ctx, ref, req, progress)
	}
	if req.Cleanup {
		return wire.RestoreResult{}, os.RemoveAll(w.stagingDir(ref.OpID))
	}
	m, err := w.restoreManifest(ctx, req)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	p, err := w.plugins.For(m.Plugin)
	if err != nil {
		return wire.RestoreResult{}, fmt.Errorf("backup %s: %w", req.BackupID, err)
	}
	source, files, err := w.nodeFiles(ctx, req, m)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	step := plugin.RestoreStep{BackupID: req.BackupID, Input: req.Plugin, Target: req.Target, Earlier: req.Earlier}
	if part := wire.NodePart(m, source); part != nil && source != "" {
		step.Source = part.Plugin
	}
	stage, err := p.Stage(step)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	into := stage.Into
	if into == "" {
		into = w.stagingDir(ref.OpID)
	}
	dest, err := stageDest(into, stage)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	res := wire.RestoreResult{Target: dest, SourceNode: source}
	if stage.Needed {
		res, err = w.download(ctx, ref, req, stage, dest, files, progress)
		res.SourceNode = source
		if err != nil {
			if errors.Is(err, wire.ErrDamaged) && stage.Into == "" {
				// The plugin never sees a damaged staging dir: nothing is
				// loaded from files that are not all there.
				return res, pluginDamageFailure(m.Plugin, p, &res)
			}
			return res, err
		}
	}
	out, err := p.Restore(ctx, step, into)
	if err != nil {
		return res, err
	}
	if len(out) > plugin.MaxResult {
		return res, wire.Permanent(fmt.Errorf("plugin %s: restore result of %d bytes (at most %d)", m.Plugin, len(out), plugin.MaxResult))
	}
	res.Plugin = out
	w.log.Info("restore step done", "op", ref.OpID, "backup", req.BackupID, "plugin", m.Plugin, "into", into,
		"downloaded", res.Downloaded, "kept", res.Kept)
	return res, nil
}

// stageDest is where a stage's files go: into, or its Sub directory of
// the staging dir (a node staging several backed-up nodes' files keeps
// each apart). A Sub that would leave the staging dir is a plugin bug.
func stageDest(into string, stage plugin.Stage) (string, error) {
	if stage.Sub == "" {
		return into, nil
	}
	if stage.Into != "" || !filepath.IsLocal(filepath.FromSlash(stage.Sub)) {
		return "", wire.Permanent(fmt.Errorf("plugin stage: subdirectory %q must be a relative path inside the staging dir (and no Into)", stage.Sub))
	}
	return filepath.Join(into, filepath.FromSlash(stage.Sub)), nil
}

// download makes into equal to the files the stage chooses. A directory
// the request named is checked (here, and again once it exists, right
// before the first write, so a symlink swapped in since the leader's
// check does not get through); none may overlap the agent's own state.
func (w *LocalWorker) download(ctx context.Context, ref wire.StepRef, req wire.RestoreRequest, stage plugin.Stage, into string, files []storage.FileEntry, progress wire.ProgressFunc) (wire.RestoreResult, error) {
	res := wire.RestoreResult{Target: into}
	opts := tree.RestoreOptions{Concurrency: w.cfg.DownloadConcurrency, Progress: toFSMProgress(progress),
		Include: stage.Include, Exclude: stage.Exclude, Select: stage.Select, KeepExtra: stage.KeepExtra}
	if stage.Into != "" {
		if req.Target != "" {
			if err := w.guard.check(into); err != nil {
				return res, wire.Permanent(err)
			}
			opts.CheckRoot = w.guard.check
		}
		// A mirror removes whatever the backup lacks: never aim it at the
		// agent's own state.
		if fsutil.Within(into, w.cfg.DataDir) || fsutil.Within(w.cfg.DataDir, into) {
			return res, wire.Permanent(fmt.Errorf("restore target %s overlaps the agent's data dir %s", into, w.cfg.DataDir))
		}
	}
	files, err := tree.SelectEntries(tree.Subtree(files, stage.From), stage.Include, stage.Exclude, stage.Select)
	if err != nil {
		return res, wire.Permanent(err)
	}
	spaceDir := into
	if stage.Into == "" {
		spaceDir = w.cfg.DataDir
	}
	if err := checkFreeSpace(spaceDir, files, freeBytes); err != nil {
		if errors.Is(err, wire.ErrNoSpace) {
			return res, wire.Permanent(err)
		}
		return res, err
	}
	if stage.Owners && os.Geteuid() == 0 {
		opts.Owner = func(e *storage.FileEntry) (tree.Owner, bool) {
			if e.UID == nil || e.GID == nil {
				return tree.Owner{}, false
			}
			return tree.Owner{UID: *e.UID, GID: *e.GID}, true
		}
	}
	st, err := tree.Restore(ctx, into, files, w.repo, opts)
	w.io.downloaded.Add(st.DownloadedBytes)
	res = wire.RestoreResult{Target: into, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks,
		Downloaded: st.Downloaded, DownloadedBytes: st.DownloadedBytes, Kept: st.Kept, KeptBytes: st.KeptBytes, Removed: st.Removed}
	if errors.Is(err, tree.ErrDamaged) {
		w.logDamage(ref, st.Damaged)
		recordDamage(&res, st.Damaged, w.repo.PackOf)
		return res, damageFailure(&res)
	}
	if err != nil {
		return res, restoreError(err)
	}
	return res, nil
}
