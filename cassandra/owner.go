package cassandra

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fileOwner is who owns what a restore puts into Cassandra's
// directories: Cassandra must be able to write (compact, delete) every
// restored SSTable, and an agent running as root would otherwise leave
// them root's.
type fileOwner struct{ uid, gid int }

// parseOwner reads "user:group", "uid:gid" or "user" (its primary
// group).
func parseOwner(s string) (fileOwner, error) {
	name, group, hasGroup := strings.Cut(s, ":")
	if name == "" || (hasGroup && group == "") {
		return fileOwner{}, fmt.Errorf("file owner %q: want user:group", s)
	}
	var o fileOwner
	if uid, err := strconv.Atoi(name); err == nil {
		o.uid, o.gid = uid, -1
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return fileOwner{}, fmt.Errorf("file owner %q: %w", s, err)
		}
		o.uid, _ = strconv.Atoi(u.Uid)
		o.gid, _ = strconv.Atoi(u.Gid)
	}
	if hasGroup {
		if gid, err := strconv.Atoi(group); err == nil {
			o.gid = gid
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return fileOwner{}, fmt.Errorf("file owner %q: %w", s, err)
			}
			o.gid, _ = strconv.Atoi(g.Gid)
		}
	}
	if o.gid < 0 {
		return fileOwner{}, fmt.Errorf("file owner %q: a numeric user needs a group (uid:gid)", s)
	}
	return o, nil
}

// restoreOwner is the configured owner, or else the owner of the first
// data directory (or of its nearest existing parent).
func (p *Plugin) restoreOwner() (fileOwner, error) {
	if p.cfg.FileOwner != "" {
		return parseOwner(p.cfg.FileOwner)
	}
	for d := p.cfg.DataDirs[0]; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fileOwner{}, fmt.Errorf("owner of %s: no stat_t", d)
			}
			return fileOwner{uid: int(st.Uid), gid: int(st.Gid)}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			return fileOwner{}, fmt.Errorf("owner of the data directory: %w", err)
		}
	}
}

// agentOwner is the agent's own user and group: files only the agent
// reads keep them.
func agentOwner() fileOwner { return fileOwner{uid: os.Geteuid(), gid: os.Getegid()} }

// chown gives path to o unless it already belongs to it (an agent that
// runs as Cassandra's user never needs the privilege).
func (o fileOwner) chown(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == o.uid && int(st.Gid) == o.gid {
		return nil
	}
	if err := os.Lchown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("give %s to %d:%d (cassandra_file_owner): %w", path, o.uid, o.gid, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents, each given to o.
func (o fileOwner) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := o.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return o.chown(dir)
}
