package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// drillDir is a drill step's scratch space: under the agent's own data
// dir, named by the operation, so a drill can never write (or remove)
// anything the database or the operator owns.
func (w *LocalWorker) drillDir(opID string) string {
	return filepath.Join(w.cfg.DataDir, "drill", opID)
}

// drill restores req.SourceNode's files of the backup into scratch
// space, reads every file back against the manifest's size and SHA-256,
// runs the plugin's check on the restored tree, and removes the scratch
// space whatever the outcome.
func (w *LocalWorker) drill(ctx context.Context, ref wire.StepRef, req wire.RestoreRequest, progress wire.ProgressFunc) (wire.RestoreResult, error) {
	m, err := w.restoreManifest(ctx, req)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	source, files, err := w.nodeFiles(ctx, req, m)
	if err != nil {
		return wire.RestoreResult{}, err
	}
	base := w.drillDir(ref.OpID)
	dir := filepath.Join(base, fmt.Sprintf("%d-%s", ref.Step, source))
	// A repeated step starts clean; the drill's own space only.
	if err := os.RemoveAll(dir); err != nil {
		return wire.RestoreResult{}, err
	}
	defer func() {
		started := time.Now()
		if err := os.RemoveAll(dir); err != nil {
			w.log.Warn("removing drill scratch space", "dir", dir, "err", err)
		}
		w.log.Info("drill scratch space removed", "op", ref.OpID, "dir", dir, "took", time.Since(started).Round(time.Millisecond))
		_ = os.Remove(base) // once the op's last step is done with it
		_ = os.Remove(filepath.Dir(base))
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wire.RestoreResult{}, err
	}
	if err := checkFreeSpace(dir, files, freeBytes); err != nil {
		if errors.Is(err, wire.ErrNoSpace) {
			return wire.RestoreResult{}, wire.Permanent(fmt.Errorf("drill scratch space: %w", err))
		}
		return wire.RestoreResult{}, err
	}
	st, err := tree.Restore(ctx, dir, files, w.repo, tree.RestoreOptions{Concurrency: w.cfg.DownloadConcurrency, Progress: toFSMProgress(progress), Scratch: true})
	w.io.downloaded.Add(st.DownloadedBytes)
	res := wire.RestoreResult{Target: dir, SourceNode: source, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks,
		Downloaded: st.Downloaded, DownloadedBytes: st.DownloadedBytes}
	if errors.Is(err, tree.ErrDamaged) {
		w.logDamage(ref, st.Damaged)
		recordDamage(&res, st.Damaged, w.repo.PackOf)
		return res, damageFailure(&res)
	}
	if err != nil {
		return res, restoreError(err)
	}
	if res.Verified, res.VerifiedBytes, err = tree.Verify(ctx, dir, files, w.cfg.HashWorkers); err != nil {
		return res, wire.Permanent(err)
	}
	if p, err := w.plugins.For(m.Plugin); err == nil {
		if c, ok := p.(plugin.DrillChecker); ok {
			out, err := c.CheckDrill(ctx, dir)
			if err != nil {
				return res, wire.Permanent(fmt.Errorf("plugin %s drill check: %w", m.Plugin, err))
			}
			if len(out) > plugin.MaxResult {
				return res, wire.Permanent(fmt.Errorf("plugin %s: drill result of %d bytes (at most %d)", m.Plugin, len(out), plugin.MaxResult))
			}
			res.Plugin = json.RawMessage(out)
		}
	}
	w.log.Info("drill step done", "op", ref.OpID, "backup", req.BackupID, "source", source,
		"files", res.Verified, "bytes", res.VerifiedBytes)
	return res, nil
}
