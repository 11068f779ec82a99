package files

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree/pattern"
)

// NodePlaceholder in a target stands for the backed-up node's id, so
// several nodes restore into directories of their own.
const NodePlaceholder = "{node}"

// PlanRestore restores every assigned node side by side: into the
// request's target when it names one (below it, in a directory per
// backed-up node, when several nodes restore), else into each root.
func (Driver) PlanRestore(req plugin.RestoreRequest) (plugin.Plan, error) {
	if err := checkSelection(req); err != nil {
		return plugin.Plan{}, err
	}
	input, err := json.Marshal(Action{Select: req.Select, Delete: req.Delete})
	if err != nil {
		return plugin.Plan{}, err
	}
	if string(input) == "{}" {
		input = nil // a whole restore into the roots: the step needs no input
	}
	var phase plugin.Phase
	for _, n := range req.Nodes {
		target, err := nodeTarget(req.Target, n.Source, len(req.Nodes) > 1)
		if err != nil {
			return plugin.Plan{}, err
		}
		phase.Actions = append(phase.Actions, plugin.Action{Node: n.Node, Input: input, Target: target})
	}
	return plugin.Plan{Phases: []plugin.Phase{phase}}, nil
}

// checkSelection refuses a malformed pattern and one that matches no path
// of the nodes restored.
func checkSelection(req plugin.RestoreRequest) error {
	if len(req.Select) == 0 {
		return nil
	}
	if err := pattern.Validate(req.Select); err != nil {
		return fmt.Errorf("%w: select: %v", plugin.ErrBadRequest, err)
	}
	var unmatched []string
	for _, p := range req.Select {
		if !matchesSome(p, req.Nodes) {
			unmatched = append(unmatched, p)
		}
	}
	if len(unmatched) > 0 {
		return fmt.Errorf("%w: backup %s has no path matching %s", plugin.ErrBadRequest, req.BackupID, strings.Join(unmatched, ", "))
	}
	return nil
}

func matchesSome(pat string, nodes []plugin.NodeAssignment) bool {
	for _, n := range nodes {
		for _, p := range n.Paths {
			if ok, _ := pattern.Matches(pat, p); ok {
				return true
			}
		}
	}
	return false
}

// nodeTarget is where a node restores when the request names a target:
// the target itself for one node, else the backed-up node's directory
// below it (or the target with NodePlaceholder replaced).
func nodeTarget(target, sourceNode string, several bool) (string, error) {
	if target == "" {
		return "", nil
	}
	placed := strings.Contains(target, NodePlaceholder)
	if !placed && !several {
		return filepath.Clean(target), nil
	}
	if sourceNode == "" || sourceNode == "." || sourceNode == ".." || strings.ContainsAny(sourceNode, "/\\\x00") {
		return "", fmt.Errorf("%w: backup node id %q cannot name a directory under the target", plugin.ErrBadRequest, sourceNode)
	}
	if placed {
		return filepath.Clean(strings.ReplaceAll(target, NodePlaceholder, sourceNode)), nil
	}
	return filepath.Join(target, sourceNode), nil
}
