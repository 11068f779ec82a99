package placement

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
)

// Identity is where a restored instance will live: everything of a
// placement instance that names a node. M3 keys the placement by ID and
// connects to Endpoint (host:port of the node's tchannel listener);
// Hostname and Port repeat the endpoint's parts.
type Identity struct {
	ID             string
	Endpoint       string
	Hostname       string
	Port           uint32
	IsolationGroup string
	Zone           string
	// DebugPort is the node's debug listener (0: none recorded, as
	// m3dbnode's own placement API leaves it).
	DebugPort uint32
}

// Rewrite returns a copy of p with every instance moved to its new
// identity: mapping is keyed by the backed-up instance id (the placement's
// map key) and must name every instance of p, no other, and give each a
// distinct new id and endpoint. Shards keep their ids, states, cutover and
// cutoff times and redirects; a shard's source_id is remapped through the
// mapping. Weight and shard set ids are kept, as are unknown fields of the
// placement, its instances, their metadata and shards. p is not changed.
//
// Rewrite refuses, naming the instance, a mapping that leaves an instance
// without a new identity, names an instance p lacks, maps two instances to
// one id or endpoint, or gives an incomplete or inconsistent identity; a
// placement whose map key differs from its instance's id, or whose shard
// names a source that is not in the placement; and a mapping that would put
// two replicas of a shard in one isolation group where they were apart.
func Rewrite(p *m3pb.Placement, mapping map[string]Identity) (*m3pb.Placement, error) {
	if p == nil {
		return nil, fmt.Errorf("placement: no placement to rewrite")
	}
	if err := checkMapping(p, mapping); err != nil {
		return nil, err
	}
	out := proto.Clone(p).(*m3pb.Placement)
	out.Instances = make(map[string]*m3pb.Instance, len(p.GetInstances()))
	for _, oldID := range sortedKeys(p.GetInstances()) {
		in := proto.Clone(p.GetInstances()[oldID]).(*m3pb.Instance)
		id := mapping[oldID]
		in.Id = id.ID
		in.Endpoint = id.Endpoint
		in.Hostname = id.Hostname
		in.Port = id.Port
		in.IsolationGroup = id.IsolationGroup
		in.Zone = id.Zone
		if in.Metadata != nil || id.DebugPort != 0 {
			if in.Metadata == nil {
				in.Metadata = new(m3pb.InstanceMetadata)
			}
			in.Metadata.DebugPort = id.DebugPort
		}
		for _, s := range in.GetShards() {
			if s.GetSourceId() == "" {
				continue
			}
			src, ok := mapping[s.GetSourceId()]
			if !ok { // checkMapping saw to it; keep the invariant local
				return nil, fmt.Errorf("placement: instance %q shard %d: source %q has no new identity", oldID, s.GetId(), s.GetSourceId())
			}
			s.SourceId = src.ID
		}
		out.Instances[id.ID] = in
	}
	if err := checkIsolation(p, out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkMapping validates the placement's own consistency and the mapping
// against it, reporting every problem found (sorted, so errors are stable).
func checkMapping(p *m3pb.Placement, mapping map[string]Identity) error {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	for _, key := range sortedKeys(p.GetInstances()) {
		in := p.GetInstances()[key]
		if in == nil {
			add("instance %q is empty in the placement", key)
			continue
		}
		if in.GetId() != key {
			add("instance %q is stored under key %q in the placement", in.GetId(), key)
		}
		if _, ok := mapping[key]; !ok {
			add("instance %q (%s) has no new identity", key, in.GetEndpoint())
		}
		for _, s := range in.GetShards() {
			if src := s.GetSourceId(); src != "" {
				if _, ok := p.GetInstances()[src]; !ok {
					add("instance %q shard %d names source %q, which is not in the placement", key, s.GetId(), src)
				}
			}
		}
	}

	byID := map[string][]string{}
	byEndpoint := map[string][]string{}
	for _, oldID := range sortedKeys(mapping) {
		id := mapping[oldID]
		if _, ok := p.GetInstances()[oldID]; !ok {
			add("the mapping names instance %q, which is not in the placement (it has %s)", oldID, strings.Join(quoted(sortedKeys(p.GetInstances())), ", "))
			continue
		}
		if msg := incomplete(id); msg != "" {
			add("instance %q: new identity %s", oldID, msg)
		}
		if id.ID != "" {
			byID[id.ID] = append(byID[id.ID], oldID)
		}
		if id.Endpoint != "" {
			byEndpoint[id.Endpoint] = append(byEndpoint[id.Endpoint], oldID)
		}
	}
	for _, newID := range sortedKeys(byID) {
		if olds := byID[newID]; len(olds) > 1 {
			add("instances %s are all mapped to id %q", strings.Join(quoted(olds), " and "), newID)
		}
	}
	for _, ep := range sortedKeys(byEndpoint) {
		if olds := byEndpoint[ep]; len(olds) > 1 {
			add("instances %s are all mapped to endpoint %s", strings.Join(quoted(olds), " and "), ep)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("placement: cannot rewrite for the restore: %s", strings.Join(problems, "; "))
	}
	return nil
}

// incomplete says what is missing or inconsistent in a new identity.
func incomplete(id Identity) string {
	var missing []string
	for _, f := range []struct {
		name  string
		empty bool
	}{
		{"id", id.ID == ""},
		{"endpoint", id.Endpoint == ""},
		{"hostname", id.Hostname == ""},
		{"port", id.Port == 0},
		{"isolation group", id.IsolationGroup == ""},
		{"zone", id.Zone == ""},
	} {
		if f.empty {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "lacks " + strings.Join(missing, ", ")
	}
	host, port, err := net.SplitHostPort(id.Endpoint)
	if err != nil {
		return fmt.Sprintf("has endpoint %q, not host:port", id.Endpoint)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || uint32(n) != id.Port {
		return fmt.Sprintf("has endpoint %s but port %d", id.Endpoint, id.Port)
	}
	if host == "" {
		return fmt.Sprintf("has endpoint %q without a host", id.Endpoint)
	}
	if id.DebugPort > 65535 {
		return fmt.Sprintf("has debug port %d, not a TCP port", id.DebugPort)
	}
	return ""
}

// checkIsolation refuses a rewrite that puts two replicas of a shard in one
// isolation group when the backed-up placement kept them apart: M3 places
// replicas in distinct groups so one group's loss keeps the data.
func checkIsolation(before, after *m3pb.Placement) error {
	shared := func(p *m3pb.Placement) map[uint32]map[string][]string {
		m := map[uint32]map[string][]string{}
		for _, key := range sortedKeys(p.GetInstances()) {
			in := p.GetInstances()[key]
			for _, s := range in.GetShards() {
				if s.GetState() == m3pb.ShardState_LEAVING {
					continue // its replacement is initializing elsewhere
				}
				g := m[s.GetId()]
				if g == nil {
					g = map[string][]string{}
					m[s.GetId()] = g
				}
				g[in.GetIsolationGroup()] = append(g[in.GetIsolationGroup()], in.GetId())
			}
		}
		return m
	}
	was, now := shared(before), shared(after)
	var problems []string
	for _, shard := range sortedKeys(now) {
		for _, group := range sortedKeys(now[shard]) {
			ids := now[shard][group]
			if len(ids) < 2 {
				continue
			}
			apart := true
			for _, g := range was[shard] {
				if len(g) > 1 {
					apart = false
				}
			}
			if apart {
				problems = append(problems, fmt.Sprintf("shard %d would have replicas on %s all in isolation group %q",
					shard, strings.Join(quoted(ids), " and "), group))
			}
		}
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more shards", len(problems)-3))
		}
		return fmt.Errorf("placement: cannot rewrite for the restore: %s (the backed-up placement kept them apart)", strings.Join(problems, "; "))
	}
	return nil
}

func sortedKeys[K string | uint32, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func quoted(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return q
}
