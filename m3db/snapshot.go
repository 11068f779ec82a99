package m3db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/m3db/fileset"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// Layout of the tree a snapshot hands to the node: the node's files as
// they lie under its data dir (filePathPrefix), and what the backup took
// of etcd and of the node.
const (
	filesDir  = "files"
	etcdFile  = "m3db/etcd.json"
	nodeFile  = "m3db/node.json"
	maxListed = 100 // skipped filesets named in the manifest (all in node.json)
)

// nodePlugin is one node's M3DB behind the seam.
type nodePlugin struct {
	s    Settings
	http *http.Client
	// verifiedPath keeps the keys of the filesets found intact (none
	// without an agent data dir).
	verifiedPath string
	// afterLink, when set (tests), runs between linking and the check
	// that etcd did not change.
	afterLink func()
}

// Open returns the node's M3DB plugin.
func (Driver) Open(cfg plugin.Config, env plugin.Env) (plugin.Plugin, error) {
	s, ok := cfg.(*Settings)
	if !ok {
		return nil, fmt.Errorf("m3db: configuration of type %T", cfg)
	}
	p := &nodePlugin{s: *s, http: &http.Client{Timeout: 10 * time.Second}}
	if env.DataDir != "" {
		p.verifiedPath = filepath.Join(env.DataDir, "plugin", Name, "verified-filesets")
	}
	return p, nil
}

// Snapshot takes what a backup of this node captures into dir: etcd's
// placement, namespaces and extra keys at one revision, and every
// complete and intact fileset (hard links; the two open commit logs
// copied up to their last whole chunk). The files are linked first and checked
// after, so a fileset M3 deletes meanwhile is still whole in dir or not
// there at all. A node that does not report bootstrapped is refused.
func (p *nodePlugin) Snapshot(ctx context.Context, tag, dir string) (plugin.Source, error) {
	if err := p.checkHealth(ctx); err != nil {
		return plugin.Source{}, plugin.Permanent(err)
	}
	cli, err := p.s.etcdClient()
	if err != nil {
		return plugin.Source{}, plugin.Permanent(fmt.Errorf("%w: %v", ErrUnavailable, err))
	}
	defer cli.Close()
	capture, err := p.s.captureEtcd(ctx, cli)
	if err != nil {
		return plugin.Source{}, err
	}
	files := filepath.Join(dir, filesDir)
	if err := os.MkdirAll(files, 0o700); err != nil { // a node without filesets yet has an empty tree
		return plugin.Source{}, err
	}
	if err := p.linkTree(files); err != nil {
		return plugin.Source{}, err
	}
	var verified *verifiedCache
	if p.verifiedPath != "" {
		verified = loadVerified(p.verifiedPath)
	}
	meta, err := keepIntact(files, verified)
	if err != nil {
		return plugin.Source{}, err
	}
	if p.afterLink != nil {
		p.afterLink()
	}
	// The files were linked after etcd was read: had the placement or the
	// namespaces changed meanwhile, the files would not match them. The
	// step fails (naming the key) and its retry takes a new cut.
	if err := p.s.checkUnchanged(ctx, cli, capture); err != nil {
		return plugin.Source{}, err
	}
	meta.InstanceID, meta.Revision = p.s.InstanceID, capture.Revision
	if err := meta.describeCluster(&p.s, capture); err != nil {
		return plugin.Source{}, plugin.Permanent(err)
	}
	if err := writeJSON(filepath.Join(dir, etcdFile), capture); err != nil {
		return plugin.Source{}, err
	}
	if err := writeJSON(filepath.Join(dir, nodeFile), meta); err != nil {
		return plugin.Source{}, err
	}
	var warnings []string
	for i, sk := range meta.Skipped {
		if i == maxListed {
			warnings = append(warnings, fmt.Sprintf("%d more filesets left out (%s)", len(meta.Skipped)-i, nodeFile))
			break
		}
		warnings = append(warnings, fmt.Sprintf("left out %s: %s", sk.Fileset, sk.Problem))
	}
	if len(meta.Skipped) > maxListed {
		meta.Skipped = meta.Skipped[:maxListed]
	}
	if verified != nil {
		if err := verified.save(); err != nil {
			return plugin.Source{}, fmt.Errorf("saving the verified filesets: %w", err)
		}
	}
	raw, err := json.Marshal(meta)
	return plugin.Source{Root: dir, InPlace: true, Meta: raw, Warnings: warnings}, err
}

// checkHealth asks the node whether it is up and bootstrapped.
func (p *nodePlugin) checkHealth(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.s.HealthURL, nil)
	if err != nil {
		return fmt.Errorf("m3db_health_url: %w", err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: m3dbnode at %s: %v", ErrUnavailable, p.s.HealthURL, err)
	}
	defer resp.Body.Close()
	var h struct {
		Bootstrapped bool `json:"bootstrapped"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || !h.Bootstrapped {
		return fmt.Errorf("%w: m3dbnode at %s is not bootstrapped (HTTP %d)", ErrUnavailable, p.s.HealthURL, resp.StatusCode)
	}
	return nil
}

// linkTree hard-links the parts of the data dir a backup takes into dst:
// data and index filesets always, snapshot filesets and commit logs as
// configured. The two highest-indexed commit logs may still be appended
// to, so they are copied, up to their last whole chunk now.
func (p *nodePlugin) linkTree(dst string) error {
	tops := []string{"data", path.Join("index", "data")}
	if p.s.IncludeSnapshots {
		tops = append(tops, "snapshots", path.Join("index", "snapshots"))
	}
	for _, top := range tops {
		if err := linkDir(filepath.Join(p.s.DataDir, top), filepath.Join(dst, top)); err != nil {
			return err
		}
	}
	if !p.s.IncludeCommit {
		return nil
	}
	logs, err := os.ReadDir(filepath.Join(p.s.DataDir, "commitlogs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// M3 writes to one log and keeps the next one open, empty, to swap
	// to: the two highest indexes may both grow, so both are copied.
	var indexes []int
	for _, e := range logs {
		if idx, ok := commitLogIndex(e.Name()); ok {
			indexes = append(indexes, idx)
		}
	}
	slices.Sort(indexes)
	open := map[int]bool{}
	for _, idx := range indexes[max(0, len(indexes)-openCommitLogs):] {
		open[idx] = true
	}
	for _, e := range logs {
		idx, ok := commitLogIndex(e.Name())
		if !ok {
			continue
		}
		src, to := filepath.Join(p.s.DataDir, "commitlogs", e.Name()), filepath.Join(dst, "commitlogs", e.Name())
		if open[idx] {
			err = copyPrefix(src, to)
		} else {
			err = linkFile(src, to)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openCommitLogs is how many of the highest-indexed commit logs M3 may
// still append to.
const openCommitLogs = 2

// commitLogIndex parses commitlog-0-<index>.db.
func commitLogIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "commitlog-0-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".db")
	n, err := strconv.Atoi(rest)
	return n, ok && err == nil
}

// linkDir hard-links every regular file below src into dst. A file that
// vanishes meanwhile is left out (its fileset then fails its check).
func linkDir(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return linkFile(p, filepath.Join(dst, rel))
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func linkFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s: %w (the crayfish data dir must be on the M3DB data dir's filesystem)", src, err)
	}
	return nil
}

// copyPrefix copies src's whole chunks up to its length now: M3 keeps
// appending to an open commit log, and the copy ends at a chunk
// boundary (fileset.CompleteCommitLogLength), where M3's reader stops
// cleanly.
func copyPrefix(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.LimitReader(in, fi.Size())); err != nil {
		out.Close()
		return err
	}
	// Measured on the copy: the bytes already taken, whatever M3 writes
	// meanwhile.
	size, err := out.Seek(0, io.SeekCurrent)
	if err == nil {
		size, err = fileset.CompleteCommitLogLength(out, size)
	}
	if err == nil {
		err = out.Truncate(size)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// keepIntact checks the linked tree and removes every file that is not
// part of a complete and intact fileset, naming what it left out. A
// fileset verified by an earlier snapshot with the same files (verified,
// may be nil) is not read again.
func keepIntact(root string, verified *verifiedCache) (NodeMeta, error) {
	meta := NodeMeta{Filesets: map[fileset.Kind]int{}, DataBytes: map[string]int64{}}
	var v fileset.Verified
	if verified != nil {
		v = verified
	}
	rep, err := fileset.ScanVerified(os.DirFS(root), v)
	if err != nil {
		return meta, err
	}
	var drop []string
	for _, f := range rep.Filesets {
		if f.OK() {
			meta.Filesets[f.Kind]++
			if f.Kind == fileset.Data || f.Kind == fileset.Snapshot {
				for _, name := range f.Files {
					if strings.HasSuffix(name, "-data.db") {
						if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(name))); err == nil {
							meta.DataBytes[f.Namespace] += fi.Size()
						}
					}
				}
			}
			continue
		}
		meta.Skipped = append(meta.Skipped, Skipped{Fileset: f.String(), Problem: f.Problem.Error()})
		drop = append(drop, f.Files...)
	}
	for _, o := range rep.Other {
		meta.Skipped = append(meta.Skipped, Skipped{Fileset: o, Problem: "not part of a fileset"})
		drop = append(drop, o)
	}
	meta.SkippedTotal = len(meta.Skipped)
	slices.Sort(drop)
	for _, f := range slices.Compact(drop) {
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(f))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return meta, err
		}
	}
	return meta, nil
}

func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o600)
}

// Release has nothing to drop: the snapshot lives in dir.
func (p *nodePlugin) Release(context.Context, string) error { return nil }
