package worker

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// systemDirs are top-level directories a restore target must never be or
// lie inside: restoring a tree there overwrites the machine itself.
var systemDirs = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys", "/run"}

// targetGuard says what a node's restore targets must stay clear of.
type targetGuard struct {
	dataDir string // the agent's data dir
	repo    string // the local directory of a file:// repository, or ""
}

func newTargetGuard(cfg Config) targetGuard {
	return targetGuard{dataDir: cfg.DataDir, repo: fileRepoDir(cfg.Repository)}
}

// fileRepoDir is the directory of a file:// repository URL ("" for other
// schemes or a URL that does not parse).
func fileRepoDir(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.Scheme != "file" {
		return ""
	}
	p := u.Path
	if p == "" {
		p = u.Opaque
	}
	if p == "" || !filepath.IsAbs(p) {
		return ""
	}
	return filepath.Clean(p)
}

// realPath resolves the symlinks of the longest existing prefix of the
// absolute path p and appends the rest unchanged: the path a write to p
// would really reach today. Components that do not exist yet cannot be
// symlinks; a "..", once past the existing prefix, is resolved lexically.
func realPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q is not an absolute path", wire.ErrBadRequest, p)
	}
	p = filepath.Clean(p)
	var rest []string
	for cur := p; ; cur = filepath.Dir(cur) {
		_, err := os.Lstat(cur)
		if err == nil {
			real, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return "", fmt.Errorf("resolve %s: %w", cur, err)
			}
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return filepath.Clean(real), nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("resolve %s: %w", cur, err)
		}
		if cur == filepath.Dir(cur) {
			return "", fmt.Errorf("resolve %s: %w", p, err)
		}
		rest = append(rest, filepath.Base(cur))
	}
}

// check refuses target (the path the request named) unless it is safe: its
// real path is not "/", not a system directory or inside one, and neither
// is, contains nor lies inside the data dir or the repository. The error
// names the conflict.
func (g targetGuard) check(target string) error {
	real, err := realPath(target)
	if err != nil {
		return err
	}
	via := ""
	if real != filepath.Clean(target) {
		via = fmt.Sprintf(" (really %s)", real)
	}
	refuse := func(why string) error {
		return fmt.Errorf("%w: %w: target %s%s %s", wire.ErrBadRequest, wire.ErrUnsafeTarget, target, via, why)
	}
	if real == "/" {
		return refuse("is the filesystem root")
	}
	for _, d := range systemDirs {
		if fsutil.Within(real, d) {
			return refuse("is a system directory or lies inside " + d)
		}
	}
	for _, guarded := range []struct{ what, dir string }{{"the agent's data dir", g.dataDir}, {"the repository", g.repo}} {
		if guarded.dir == "" {
			continue
		}
		dir := guarded.dir
		if r, err := realPath(dir); err == nil {
			dir = r
		}
		switch {
		case real == dir:
			return refuse("is " + guarded.what + " " + guarded.dir)
		case fsutil.Within(real, dir):
			return refuse("lies inside " + guarded.what + " " + guarded.dir)
		case fsutil.Within(dir, real):
			return refuse("contains " + guarded.what + " " + guarded.dir)
		}
	}
	return nil
}
