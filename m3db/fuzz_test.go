package m3db

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
	"github.com/crayfish-backup/crayfish/m3db/placement"
)

// FuzzPlacement feeds arbitrary values of the placement and namespace
// registry keys to what the plugin does with them: describeCluster (a
// backup's record of the cut it took from etcd), the protobuf decoders,
// and placement.Rewrite (a restore onto new instances, with a mapping that
// gives every instance a complete new identity). Nothing may panic. What
// decodes encodes and decodes to an equal message; a described node is in
// the placement, with instances sorted and shard counts that add up; a
// rewrite leaves its input alone and gives every instance, under its new
// id, its shards.
func FuzzPlacement(f *testing.F) {
	for _, name := range [][2]string{{"placement.pb", "namespaces.pb"}} {
		p, err := os.ReadFile(filepath.Join("m3pb", "testdata", name[0]))
		if err != nil {
			f.Fatal(err)
		}
		r, err := os.ReadFile(filepath.Join("m3pb", "testdata", name[1]))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p, r, "m3a")
		f.Add(p, r, "m3x")
		f.Add(p[:len(p)/2], r[:len(r)/2], "m3b")
	}
	small, _ := m3pb.Marshal(&m3pb.Placement{Instances: map[string]*m3pb.Instance{
		"a": {Id: "a", Endpoint: "h:1", IsolationGroup: "g1", Shards: []*m3pb.Shard{{Id: 1, SourceId: "b"}}},
		"b": {Id: "b", Endpoint: "h:2", IsolationGroup: "g2", Shards: []*m3pb.Shard{{Id: 1, State: m3pb.ShardState_LEAVING}}},
		"c": nil,
	}})
	f.Add(small, []byte{}, "a")
	f.Fuzz(func(t *testing.T, pl, reg []byte, instance string) {
		s := &Settings{Env: "default_env", Service: "m3db", InstanceID: instance}
		c := EtcdCapture{Revision: 7, Keys: []EtcdKey{{Key: s.PlacementKey(), Value: pl}, {Key: s.NamespacesKey(), Value: reg}}}
		var m NodeMeta
		if err := m.describeCluster(s, c); err == nil {
			if !slices.IsSorted(m.Instances) || !slices.Contains(m.Instances, instance) {
				t.Fatalf("described instances %v for %q", m.Instances, instance)
			}
		}

		if r, err := m3pb.UnmarshalRegistry(reg); err == nil {
			roundTrip(t, r, func(b []byte) (proto.Message, error) { return m3pb.UnmarshalRegistry(b) })
		}
		p, err := m3pb.UnmarshalPlacement(pl)
		if err != nil {
			return
		}
		roundTrip(t, p, func(b []byte) (proto.Message, error) { return m3pb.UnmarshalPlacement(b) })
		if m.Shards != nil {
			n := 0
			for _, k := range m.Shards {
				n += k
			}
			if n != len(p.GetInstances()[instance].GetShards()) {
				t.Fatalf("shard counts %v for %d shards", m.Shards, len(p.GetInstances()[instance].GetShards()))
			}
		}

		mapping := map[string]placement.Identity{}
		for i, k := range slices.Sorted(maps.Keys(p.GetInstances())) {
			in := p.GetInstances()[k]
			group := in.GetIsolationGroup()
			if group == "" {
				group = fmt.Sprintf("g%d", i)
			}
			mapping[k] = placement.Identity{ID: fmt.Sprintf("new-%d", i), Endpoint: fmt.Sprintf("h%d:9000", i),
				Hostname: fmt.Sprintf("h%d", i), Port: 9000, IsolationGroup: group, Zone: "z"}
		}
		before := proto.Clone(p)
		out, err := placement.Rewrite(p, mapping)
		if !proto.Equal(before, p) {
			t.Fatal("Rewrite changed its input")
		}
		if err != nil {
			return
		}
		if len(out.GetInstances()) != len(p.GetInstances()) {
			t.Fatalf("rewrite has %d instances, the placement %d", len(out.GetInstances()), len(p.GetInstances()))
		}
		for old, id := range mapping {
			in := out.GetInstances()[id.ID]
			if in.GetId() != id.ID || in.GetEndpoint() != id.Endpoint || len(in.GetShards()) != len(p.GetInstances()[old].GetShards()) {
				t.Fatalf("instance %q rewritten as %v", old, in)
			}
		}
		roundTrip(t, out, func(b []byte) (proto.Message, error) { return m3pb.UnmarshalPlacement(b) })
	})
}

func roundTrip(t *testing.T, m proto.Message, decode func([]byte) (proto.Message, error)) {
	t.Helper()
	b, err := m3pb.Marshal(m)
	if err != nil {
		t.Fatalf("a decoded message does not encode: %v", err)
	}
	m2, err := decode(b)
	if err != nil {
		t.Fatalf("an encoded message does not decode: %v", err)
	}
	if !proto.Equal(m, m2) {
		t.Fatal("message does not round-trip")
	}
}
