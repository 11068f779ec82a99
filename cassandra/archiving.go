package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
)

// SpoolDir is where the archived segments of an agent with data dir
// dataDir wait for the next backup.
func SpoolDir(dataDir string) string {
	return filepath.Join(dataDir, "plugin", Name, "commitlog")
}

// pitrTimeFormat is restore_point_in_time's format (Cassandra parses it
// in GMT as yyyy:MM:dd HH:mm:ss[.[SSSSSS][SSS]]).
const pitrTimeFormat = "2006:01:02 15:04:05.000000"

// restoreCommand copies an archived segment into the commit-log
// directory (Cassandra splits it on spaces and runs it without a shell).
const restoreCommand = "/bin/cp -f %from %to"

// pitrRestore is what a restore to a time asks of Cassandra's next
// start: replay the segments in Dirs up to To.
type pitrRestore struct {
	Dirs []string
	To   time.Time
}

// archivingProperties is the content of commitlog_archiving.properties:
// the archive command when archiving is on, and the restore keys of r
// (nil: none, so that a later start replays nothing again).
func archivingProperties(archive bool, exe, spool string, r *pitrRestore) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by crayfish (cassandra_commitlog_archive, restores to a time); it rewrites this file.\n")
	b.WriteString("# Cassandra reads it from its classpath at start-up only.\n")
	cmd := ""
	if archive {
		for _, w := range []string{exe, spool} {
			if w == "" || strings.ContainsAny(w, " \t\n\\") {
				return "", fmt.Errorf("cassandra_commitlog_archive: %q cannot be a word of archive_command (Cassandra splits it on spaces)", w)
			}
		}
		cmd = exe + " cassandra-archive-segment " + spool + " %path %name"
	}
	fmt.Fprintf(&b, "archive_command=%s\n", cmd)
	if r == nil {
		b.WriteString("restore_command=\nrestore_directories=\nrestore_point_in_time=\n")
		return b.String(), nil
	}
	for _, d := range r.Dirs {
		if d == "" || strings.ContainsAny(d, " \t\n,\\") {
			return "", fmt.Errorf("restore directory %q cannot be named in restore_directories (Cassandra splits it on commas and the command on spaces)", d)
		}
	}
	fmt.Fprintf(&b, "restore_command=%s\n", restoreCommand)
	fmt.Fprintf(&b, "restore_directories=%s\n", strings.Join(r.Dirs, ","))
	fmt.Fprintf(&b, "restore_point_in_time=%s\n", r.To.UTC().Format(pitrTimeFormat))
	b.WriteString("precision=MICROSECONDS\n")
	return b.String(), nil
}

// writeArchiving writes the properties file atomically (temp file,
// rename), readable by Cassandra.
func (p *Plugin) writeArchiving(r *pitrRestore) error {
	if p.cfg.ArchivingFile == "" {
		return fmt.Errorf("%w: no cassandra_commitlog_archiving_file configured", ErrBadRestore)
	}
	content, err := archivingProperties(p.cfg.CommitlogArchive, p.cfg.Executable, p.cfg.SpoolDir, r)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(p.cfg.ArchivingFile); err == nil && string(old) == content {
		return nil
	}
	if err := fsutil.WriteFileAtomicMode(p.cfg.ArchivingFile, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p.cfg.ArchivingFile, err)
	}
	p.log.Info("wrote cassandra's commitlog_archiving.properties", "file", p.cfg.ArchivingFile, "archive", p.cfg.CommitlogArchive, "restore", r != nil)
	return nil
}
