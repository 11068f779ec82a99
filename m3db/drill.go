package m3db

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/crayfish-backup/crayfish/m3db/fileset"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// DrillResult is what the drill check found in one node's restored files.
type DrillResult struct {
	Filesets map[fileset.Kind]int `json:"filesets"`
}

// CheckDrill checks a restore drill's tree (plugin.DrillChecker): every
// fileset in it is complete and matches its digests and checkpoint, as
// M3DB would read it at bootstrap. A backup holds only intact filesets,
// so any problem here is damage since.
func (p *nodePlugin) CheckDrill(ctx context.Context, dir string) (json.RawMessage, error) {
	rep, err := fileset.ScanDir(filepath.Join(dir, filesDir))
	if err != nil {
		return nil, err
	}
	res := DrillResult{Filesets: map[fileset.Kind]int{}}
	var problems []string
	for _, f := range rep.Filesets {
		if !f.OK() {
			problems = append(problems, f.String()+": "+f.Problem.Error())
			continue
		}
		res.Filesets[f.Kind]++
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = problems[:20]
		}
		return nil, fmt.Errorf("%d restored filesets damaged: %s", len(problems), strings.Join(problems, "; "))
	}
	return json.Marshal(res)
}

var _ plugin.DrillChecker = (*nodePlugin)(nil)
