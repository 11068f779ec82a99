package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// DrillResult is what the drill check found in one node's restored files.
type DrillResult struct {
	Tables   int `json:"tables"`
	SSTables int `json:"sstables"`
}

// CheckDrill checks a restore drill's tree (plugin.DrillChecker): every
// SSTable's components its TOC lists are there and its Data.db matches
// its digest, the checks a restore makes before it loads anything.
func (p *Plugin) CheckDrill(ctx context.Context, dir string) (json.RawMessage, error) {
	var res DrillResult
	var problems []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		tocs, _ := filepath.Glob(filepath.Join(path, "*-TOC.txt"))
		if len(tocs) == 0 {
			return nil
		}
		res.Tables++
		res.SSTables += len(tocs)
		rel, _ := filepath.Rel(dir, path)
		for _, pr := range checkSSTables(path) {
			problems = append(problems, filepath.ToSlash(rel)+": "+pr)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %d problems in restored sstables: %s", ErrBadRestore, len(problems), strings.Join(first(problems, 20), "; "))
	}
	return json.Marshal(res)
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// CheckDrill is Plugin.CheckDrill behind the seam.
func (n nodePlugin) CheckDrill(ctx context.Context, dir string) (json.RawMessage, error) {
	return n.p.CheckDrill(ctx, dir)
}

var _ plugin.DrillChecker = nodePlugin{}
