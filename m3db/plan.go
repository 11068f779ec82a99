package m3db

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// The actions of an M3DB restore, one phase each, in this order.
const (
	actStop  = "stop"  // stop m3dbnode; report the node's identity
	actFiles = "files" // make the data dir (or the selected namespaces' part) equal to the backup
	actEtcd  = "etcd"  // one node: write placement and namespaces in one transaction
	actStart = "start" // start m3dbnode; wait until it is bootstrapped
	actCheck = "check" // read back a sample of series per restored namespace
)

// Action is the input of one node's restore step.
type Action struct {
	Do string `json:"do"`
	// Namespaces are the selected namespaces (nil: all).
	Namespaces []string `json:"namespaces,omitempty"`
	// Single: one node is restored while the others serve.
	Single bool `json:"single,omitempty"`
	// Instances (etcd step) maps each restored crayfish node to the
	// backed-up placement instance whose place it takes.
	Instances map[string]string `json:"instances,omitempty"`
}

// PlanRestore makes an M3DB restore: every node stops m3dbnode and
// reports its identity; every node's data dir (or the selected
// namespaces' part of it) is made equal to its backed-up node's; one node
// writes the placement, rewritten onto the nodes' identities, and the
// namespace registry to etcd in one transaction; every node starts and
// bootstraps; every node reads back a sample of its namespaces.
//
// A full restore needs one node for each instance of the backed-up
// placement, no more, no fewer; a single-node restore (--node) replaces
// one instance and leaves the others serving.
func (Driver) PlanRestore(req plugin.RestoreRequest) (plugin.Plan, error) {
	if req.Target != "" {
		return plugin.Plan{}, fmt.Errorf("%w: an M3DB restore goes to each node's m3db_data_dir; a target directory is not supported", plugin.ErrBadRequest)
	}
	if len(req.Nodes) == 0 {
		return plugin.Plan{}, fmt.Errorf("%w: no node to restore", plugin.ErrBadRequest)
	}
	metas := map[string]NodeMeta{} // by crayfish node
	instances := map[string]string{}
	var cleared []string
	for _, n := range req.Nodes {
		if n.Clear {
			cleared = append(cleared, n.Node)
			continue
		}
		var m NodeMeta
		if err := json.Unmarshal(n.Meta, &m); err != nil {
			return plugin.Plan{}, fmt.Errorf("%w: backed-up node %s: %v", plugin.ErrInvalidMeta, n.Source, err)
		}
		if m.InstanceID == "" {
			return plugin.Plan{}, fmt.Errorf("%w: backed-up node %s: M3DB metadata without an instance id", plugin.ErrInvalidMeta, n.Source)
		}
		metas[n.Node], instances[n.Node] = m, m.InstanceID
	}
	first := metas[req.Nodes[0].Node]
	if len(cleared) > 0 {
		return plugin.Plan{}, fmt.Errorf("%w: M3DB restores onto a cluster of the backup's size: nodes %s have no backed-up node; the backup's placement has %d instances (%s), so restore onto exactly %d nodes",
			plugin.ErrBadRequest, strings.Join(cleared, ", "), len(first.Instances), strings.Join(first.Instances, ", "), len(first.Instances))
	}
	if err := checkInstances(req, metas, instances); err != nil {
		return plugin.Plan{}, err
	}
	namespaces, err := selectNamespaces(first.namespaceNames(), req.Select)
	if err != nil {
		return plugin.Plan{}, err
	}
	nodes := make([]string, 0, len(req.Nodes))
	for _, n := range req.Nodes {
		nodes = append(nodes, n.Node)
	}
	slices.Sort(nodes)
	every := func(a Action) plugin.Phase {
		var ph plugin.Phase
		for _, n := range nodes {
			ph.Actions = append(ph.Actions, plugin.Action{Node: n, Input: mustJSON(a)})
		}
		return ph
	}
	base := Action{Namespaces: namespaces, Single: req.Single}
	with := func(do string) Action { a := base; a.Do = do; return a }
	etcd := with(actEtcd)
	etcd.Instances = instances
	return plugin.Plan{Staged: true, Phases: []plugin.Phase{
		every(with(actStop)),
		every(with(actFiles)),
		{Actions: []plugin.Action{{Node: nodes[0], Input: mustJSON(etcd)}}},
		every(with(actStart)),
		every(with(actCheck)),
	}}, nil
}

// checkInstances refuses a restore whose nodes do not match the backed-up
// placement: two nodes taking one instance, backed-up nodes of different
// placements, and (full restore) an instance left without a node.
func checkInstances(req plugin.RestoreRequest, metas map[string]NodeMeta, instances map[string]string) error {
	taken := map[string]string{}
	first := metas[req.Nodes[0].Node]
	for _, n := range req.Nodes {
		m := metas[n.Node]
		if other, dup := taken[m.InstanceID]; dup {
			return fmt.Errorf("%w: nodes %s and %s would both take placement instance %s", plugin.ErrBadRequest, other, n.Node, m.InstanceID)
		}
		taken[m.InstanceID] = n.Node
		if !slices.Equal(m.Instances, first.Instances) {
			return fmt.Errorf("%w: backed-up nodes %s and %s recorded different placements (%v, %v)", plugin.ErrInvalidMeta, req.Nodes[0].Source, n.Source, first.Instances, m.Instances)
		}
		if !slices.Contains(m.Instances, m.InstanceID) {
			return fmt.Errorf("%w: backed-up node %s: instance %s is not in its own placement", plugin.ErrInvalidMeta, n.Source, m.InstanceID)
		}
	}
	if req.Single {
		return nil
	}
	var missing []string
	for _, id := range first.Instances {
		if _, ok := taken[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: placement instances %s would have no node: the backup's placement has %d instances and the restore names %d nodes (%d are needed; a backup lacking an instance's node cannot be restored in full)",
			plugin.ErrBadRequest, strings.Join(missing, ", "), len(first.Instances), len(req.Nodes), len(first.Instances))
	}
	return nil
}

// selectNamespaces resolves a selection (names or path.Match patterns)
// against the backed-up namespaces; nil selects all (returned as nil).
func selectNamespaces(all, sel []string) ([]string, error) {
	if sel == nil {
		return nil, nil
	}
	var out []string
	for _, pat := range sel {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("%w: namespace pattern %q: %v", plugin.ErrBadRequest, pat, err)
		}
		hit := false
		for _, ns := range all {
			if ok, _ := path.Match(pat, ns); ok {
				hit = true
				out = append(out, ns)
			}
		}
		if !hit {
			return nil, fmt.Errorf("%w: %q matches no namespace of the backup (it has %s)", plugin.ErrBadRequest, pat, strings.Join(all, ", "))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return b
}

func parseAction(input json.RawMessage) (Action, error) {
	var a Action
	if err := json.Unmarshal(input, &a); err != nil {
		return a, plugin.Permanent(fmt.Errorf("%w: M3DB restore step input: %v", plugin.ErrBadRequest, err))
	}
	switch a.Do {
	case actStop, actFiles, actEtcd, actStart, actCheck:
		return a, nil
	}
	return a, plugin.Permanent(fmt.Errorf("%w: unknown M3DB restore action %q", plugin.ErrBadRequest, a.Do))
}
