package cassandra

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// PlanRestore checks a restore of a Cassandra backup and plans it: a
// table restore (a selection) into the running cluster, a single-node
// restore while the others run, or a full restore of every node. Every
// plan first stages the downloads on each node while Cassandra still
// serves; the node then removes them in a last phase (Plan.Staged).
func (Driver) PlanRestore(req plugin.RestoreRequest) (plugin.Plan, error) {
	bad := func(format string, args ...any) (plugin.Plan, error) {
		return plugin.Plan{}, fmt.Errorf("%w: "+format, append([]any{plugin.ErrBadRequest}, args...)...)
	}
	if req.Target != "" {
		return bad("a cassandra restore goes into cassandra's data directories; it takes no target")
	}
	if req.Delete {
		return bad("delete applies to a restore into a target; a cassandra restore takes none")
	}
	reshaped := len(req.Unplaced) > 0
	for _, n := range req.Nodes {
		if n.Clear && req.Single {
			return bad("node %s has no counterpart in backup %s; a single-node restore puts a backed-up node back as it was: onto a cluster of another size, restore every node (without a node), which streams the backup into the running cluster", n.Node, req.BackupID)
		}
		reshaped = reshaped || n.Clear
	}
	if req.Single && len(req.Select) > 0 {
		return bad("restore either tables (on every node) or one whole node, not both")
	}
	sel, err := ParseSelection(req.Select)
	if err != nil {
		return bad("%v", err)
	}
	var backedUp []string
	views := map[string]string{}
	for _, n := range append(slices.Clone(req.Nodes), req.Unplaced...) {
		if n.Clear {
			continue
		}
		meta, err := ParseNodeMeta(n.Meta)
		if err != nil {
			return plugin.Plan{}, fmt.Errorf("%w: backup %s, node %s: %v", plugin.ErrInvalidMeta, req.BackupID, n.Source, err)
		}
		if reshaped && !validSource(n.Source) {
			return plugin.Plan{}, fmt.Errorf("%w: backup %s names a node %q that cannot name a staging directory", plugin.ErrInvalidMeta, req.BackupID, n.Source)
		}
		backedUp = append(backedUp, meta.Tables...)
		maps.Copy(views, meta.Views)
	}
	if len(sel) > 0 {
		if missing := sel.Missing(backedUp); len(missing) > 0 {
			return bad("backup %s has no table matching %s", req.BackupID, strings.Join(missing, ", "))
		}
	}
	if !req.ToTime.IsZero() {
		return planToTime(req, reshaped, sel, views)
	}
	if reshaped {
		if len(backedUp) == 0 && !slices.ContainsFunc(req.Nodes, func(n plugin.NodeAssignment) bool { return !n.Clear }) && len(req.Unplaced) == 0 {
			return bad("backup %s has no node to restore", req.BackupID)
		}
		return reshapePlan(req, sel, views), nil
	}
	if len(sel) > 0 {
		sel = sel.WithViews(views)
	}
	return restorePlan(req.Nodes, sel, req.Single), nil
}

// Reshapes: a Cassandra backup restores onto a cluster of another size
// (reshapePlan).
func (Driver) Reshapes() bool { return true }

// restorePlan lays out the actions. Nothing is truncated before every
// node has staged its files, checked them and checked them against the
// running schema.
func restorePlan(assigned []plugin.NodeAssignment, tables Selection, single bool) plugin.Plan {
	var nodes []string
	for _, n := range assigned {
		nodes = append(nodes, n.Node)
	}
	var phases []plugin.Phase
	add := func(action string, only ...string) {
		in, _ := json.Marshal(RestoreAction{Action: action, Tables: tables})
		var ph plugin.Phase
		for _, n := range nodes {
			if len(only) == 0 || slices.Contains(only, n) {
				ph.Actions = append(ph.Actions, plugin.Action{Node: n, Input: in})
			}
		}
		phases = append(phases, ph)
	}
	// report fails naming the tables a node's load or import could not
	// restore. Those steps succeed with what they did (a failed step would
	// stop its siblings' loads half way); each node's report runs on its
	// own, always, so every node's failures are named.
	report := func() {
		in, _ := json.Marshal(RestoreAction{Action: ActionReport})
		for _, n := range nodes {
			phases = append(phases, plugin.Phase{Actions: []plugin.Action{{Node: n, Input: in, Always: true}}})
		}
	}
	first := nodes[0]
	switch {
	case single:
		add(ActionNode)
	case len(tables) > 0:
		add(ActionStage)
		add(ActionSchema, first)
		add(ActionCheck)
		add(ActionTruncate, first)
		add(ActionImport)
		report()
	default:
		add(ActionStage)
		add(ActionReset)
		add(ActionStart, first)
		if len(nodes) > 1 {
			add(ActionStart, nodes[1:]...)
		}
		add(ActionSchema, first)
		add(ActionLoad)
		report()
	}
	return plugin.Plan{Phases: phases, Staged: true}
}
