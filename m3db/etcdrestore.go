package m3db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
	"github.com/crayfish-backup/crayfish/m3db/placement"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// ErrEtcdRestore marks an etcd restore the backup, the mapping or the
// current etcd cannot give: it is not retried.
var ErrEtcdRestore = errors.New("cannot restore the M3DB etcd keys")

// currentPlacement reads the placement now in etcd (nil when there is
// none) and the revision of the read.
func (s *Settings) currentPlacement(ctx context.Context, cli *clientv3.Client) (*m3pb.Placement, int64, error) {
	resp, err := cli.Get(ctx, s.PlacementKey())
	if err != nil {
		return nil, 0, fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, nil
	}
	p, err := m3pb.UnmarshalPlacement(resp.Kvs[0].Value)
	return p, resp.Header.Revision, err
}

// restoreEtcd writes the restore's etcd keys in one transaction: for a
// full restore the backed-up placement rewritten onto the restored nodes'
// identities, the namespace registry (or, with a selection, the selected
// namespaces' entries merged into the current registry) and the extra
// keys; for a single node, the current placement with that node's
// instance moved to its new identity. A repeat writes the same.
func (p *nodePlugin) restoreEtcd(ctx context.Context, a Action, step plugin.RestoreStep, dir string) error {
	capture, err := readCapture(dir)
	if err != nil {
		return err
	}
	ids := identities(step.Earlier)
	cli, err := p.s.etcdClient()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer cli.Close()
	for attempt := 0; ; attempt++ {
		var w etcdWrite
		if a.Single {
			w, err = p.s.singleNodeWrite(ctx, cli, a, ids)
		} else {
			w, err = p.s.fullWrite(ctx, cli, capture, a, ids)
		}
		if err != nil {
			return err
		}
		ok, err := w.commit(ctx, cli)
		if err != nil || ok {
			return err
		}
		if attempt == 4 {
			return fmt.Errorf("etcd keys kept changing while the restore wrote them (5 attempts)")
		}
	}
}

// identities are the new identities the stop steps reported, by node.
func identities(earlier []plugin.StepResult) map[string]identity {
	out := map[string]identity{}
	for _, r := range earlier {
		var sr stopResult
		if err := json.Unmarshal(r.Result, &sr); err != nil {
			continue // another step's result
		}
		if sr.Identity != nil {
			out[r.Node] = *sr.Identity
		}
	}
	return out
}

// etcdWrite is one transaction: the puts and deletes, guarded by the
// keys (and prefixes) it read not having changed since revision rev.
type etcdWrite struct {
	rev     int64
	guards  []string // keys; a trailing * guards a prefix
	puts    map[string][]byte
	deletes []string
}

func (w etcdWrite) commit(ctx context.Context, cli *clientv3.Client) (bool, error) {
	var cmps []clientv3.Cmp
	for _, g := range w.guards {
		key, prefix := strings.CutSuffix(g, "*")
		c := clientv3.Compare(clientv3.ModRevision(key), "<", w.rev+1)
		if prefix {
			c = c.WithPrefix()
		}
		cmps = append(cmps, c)
	}
	var ops []clientv3.Op
	for _, k := range slices.Sorted(maps.Keys(w.puts)) {
		ops = append(ops, clientv3.OpPut(k, string(w.puts[k])))
	}
	for _, k := range w.deletes {
		ops = append(ops, clientv3.OpDelete(k))
	}
	if len(ops) == 0 {
		return true, nil
	}
	resp, err := cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("%w: etcd transaction: %v", ErrUnavailable, err)
	}
	return resp.Succeeded, nil
}

// backedUp finds key in the capture.
func backedUp(c EtcdCapture, key string) []byte {
	for _, k := range c.Keys {
		if k.Key == key {
			return k.Value
		}
	}
	return nil
}

// fullWrite is the transaction of a full restore.
func (s *Settings) fullWrite(ctx context.Context, cli *clientv3.Client, c EtcdCapture, a Action, ids map[string]identity) (etcdWrite, error) {
	w := etcdWrite{puts: map[string][]byte{}}
	bp, err := m3pb.UnmarshalPlacement(backedUp(c, s.PlacementKey()))
	if err != nil || len(bp.GetInstances()) == 0 {
		return w, plugin.Permanent(fmt.Errorf("%w: the backup holds no placement at %s (%v)", ErrEtcdRestore, s.PlacementKey(), err))
	}
	mapping := map[string]placement.Identity{}
	for node, inst := range a.Instances {
		id, ok := ids[node]
		if !ok {
			return w, plugin.Permanent(fmt.Errorf("%w: node %s reported no identity in the stop step", ErrEtcdRestore, node))
		}
		if old := bp.GetInstances()[inst]; old != nil && old.GetId() == id.ID {
			// The same instance back: what is not configured stays.
			id.fill(instanceIdentity(old))
		}
		mapping[inst] = id.placementIdentity()
	}
	rewritten, err := placement.Rewrite(bp, mapping)
	if err != nil {
		return w, plugin.Permanent(fmt.Errorf("%w: %v (set m3db_endpoint, m3db_isolation_group and m3db_zone on the restored nodes)", ErrEtcdRestore, err))
	}
	cur, rev, err := s.currentPlacement(ctx, cli)
	if err != nil {
		return w, err
	}
	w.rev = rev
	w.guards = []string{s.PlacementKey(), s.NamespacesKey()}
	if a.Namespaces == nil || cur == nil {
		if w.puts[s.PlacementKey()], err = m3pb.Marshal(rewritten); err != nil {
			return w, err
		}
	}
	reg, err := s.restoredRegistry(ctx, cli, c, a.Namespaces, rev)
	if err != nil {
		return w, err
	}
	w.puts[s.NamespacesKey()] = reg
	if a.Namespaces != nil {
		return w, nil // a selection restores namespaces, not the extra keys
	}
	for _, k := range c.Keys {
		if k.Key == s.PlacementKey() || k.Key == s.NamespacesKey() {
			continue
		}
		// Only keys this node is configured to carry: a damaged or
		// hostile capture must not write elsewhere in etcd.
		if !s.carries(k.Key) {
			return w, plugin.Permanent(fmt.Errorf("%w: the backup holds etcd key %q, which m3db_extra_keys (%s) does not name: refusing to write it",
				ErrEtcdRestore, k.Key, strings.Join(s.ExtraKeys, ",")))
		}
		w.puts[k.Key] = k.Value
	}
	// Keys now under an extra prefix that the backup lacks go: the prefix
	// is restored as it was.
	for _, extra := range s.ExtraKeys {
		key, prefix := strings.CutSuffix(extra, "*")
		w.guards = append(w.guards, extra)
		if !prefix {
			if _, kept := w.puts[key]; !kept {
				w.deletes = append(w.deletes, key)
			}
			continue
		}
		resp, err := cli.Get(ctx, key, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
		if err != nil {
			return w, fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
		}
		for _, kv := range resp.Kvs {
			if _, kept := w.puts[string(kv.Key)]; !kept {
				w.deletes = append(w.deletes, string(kv.Key))
			}
		}
	}
	slices.Sort(w.deletes)
	w.deletes = slices.Compact(w.deletes)
	return w, nil
}

// restoredRegistry is the namespace registry a restore writes: the
// backed-up one, or with a selection the current one (if any) with the
// selected namespaces' entries taken from the backup.
func (s *Settings) restoredRegistry(ctx context.Context, cli *clientv3.Client, c EtcdCapture, sel []string, rev int64) ([]byte, error) {
	raw := backedUp(c, s.NamespacesKey())
	if raw == nil {
		return nil, plugin.Permanent(fmt.Errorf("%w: the backup holds no namespace registry at %s", ErrEtcdRestore, s.NamespacesKey()))
	}
	backup, err := m3pb.UnmarshalRegistry(raw)
	if err != nil || len(backup.GetNamespaces()) == 0 {
		return nil, plugin.Permanent(fmt.Errorf("%w: the backed-up namespace registry is damaged or empty (%v)", ErrEtcdRestore, err))
	}
	if sel == nil {
		return raw, nil // as backed up, unknown fields and all
	}
	resp, err := cli.Get(ctx, s.NamespacesKey(), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
	}
	out := &m3pb.Registry{Namespaces: map[string]*m3pb.NamespaceOptions{}}
	if len(resp.Kvs) > 0 {
		if out, err = m3pb.UnmarshalRegistry(resp.Kvs[0].Value); err != nil {
			return nil, err
		}
		if out.Namespaces == nil {
			out.Namespaces = map[string]*m3pb.NamespaceOptions{}
		}
	}
	for _, ns := range sel {
		opts, ok := backup.GetNamespaces()[ns]
		if !ok {
			return nil, plugin.Permanent(fmt.Errorf("%w: namespace %s is not in the backed-up registry", ErrEtcdRestore, ns))
		}
		out.Namespaces[ns] = opts
	}
	return m3pb.Marshal(out)
}

// singleNodeWrite is the transaction of a single-node restore: the
// current placement with the node's instance given its new identity
// (nothing when it already has it). The others' entries, the shard states
// and the namespaces stay as they are.
func (s *Settings) singleNodeWrite(ctx context.Context, cli *clientv3.Client, a Action, ids map[string]identity) (etcdWrite, error) {
	var w etcdWrite
	if len(a.Instances) != 1 {
		return w, plugin.Permanent(fmt.Errorf("%w: a single-node restore of %d nodes", ErrEtcdRestore, len(a.Instances)))
	}
	var node, inst string
	for node, inst = range a.Instances {
	}
	id, ok := ids[node]
	if !ok {
		return w, plugin.Permanent(fmt.Errorf("%w: node %s reported no identity in the stop step", ErrEtcdRestore, node))
	}
	cur, rev, err := s.currentPlacement(ctx, cli)
	if err != nil {
		return w, err
	}
	if cur == nil {
		return w, plugin.Permanent(fmt.Errorf("%w: etcd has no placement at %s: a single-node restore replaces one instance of a running cluster (restore the whole cluster instead)", ErrEtcdRestore, s.PlacementKey()))
	}
	old := cur.GetInstances()[inst]
	if old == nil {
		if cur.GetInstances()[id.ID] != nil && inst != id.ID {
			return w, nil // a repeat: the instance was replaced already
		}
		return w, plugin.Permanent(fmt.Errorf("%w: instance %s is not in the current placement (it has %s)", ErrEtcdRestore, inst, strings.Join(slices.Sorted(maps.Keys(cur.GetInstances())), ", ")))
	}
	if old.GetId() == id.ID {
		id.fill(instanceIdentity(old))
	}
	mapping := map[string]placement.Identity{}
	for key, in := range cur.GetInstances() {
		mapping[key] = instanceIdentity(in)
	}
	newID := id.placementIdentity()
	if mapping[inst] == newID {
		return w, nil // nothing changes
	}
	mapping[inst] = newID
	rewritten, err := placement.Rewrite(cur, mapping)
	if err != nil {
		return w, plugin.Permanent(fmt.Errorf("%w: %v", ErrEtcdRestore, err))
	}
	b, err := m3pb.Marshal(rewritten)
	if err != nil {
		return w, err
	}
	return etcdWrite{rev: rev, guards: []string{s.PlacementKey()}, puts: map[string][]byte{s.PlacementKey(): b}}, nil
}

// carries reports whether key is one of the configured extra keys or
// lies under one of their prefixes.
func (s *Settings) carries(key string) bool {
	for _, extra := range s.ExtraKeys {
		if k, prefix := strings.CutSuffix(extra, "*"); key == k || prefix && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}

// instanceIdentity is where a placement instance lives now.
func instanceIdentity(in *m3pb.Instance) placement.Identity {
	return placement.Identity{ID: in.GetId(), Endpoint: in.GetEndpoint(), Hostname: in.GetHostname(), Port: in.GetPort(),
		DebugPort: in.GetMetadata().GetDebugPort(), IsolationGroup: in.GetIsolationGroup(), Zone: in.GetZone()}
}
