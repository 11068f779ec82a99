package placement

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crayfish-backup/crayfish/m3db/m3pb"
)

func shard(id uint32, state m3pb.ShardState, source string) *m3pb.Shard {
	return &m3pb.Shard{Id: id, State: state, SourceId: source}
}

// withUnknown appends raw fields M3 newer than v1.5.0 would write.
func withUnknown[M proto.Message](m M, num protowire.Number, v uint64) M {
	r := m.ProtoReflect()
	u := protowire.AppendTag(append([]byte{}, r.GetUnknown()...), num, protowire.VarintType)
	r.SetUnknown(protowire.AppendVarint(u, v))
	return m
}

// moving is a four-instance RF 2 placement, two shards, in the middle of
// moving shard 1 from a to d (a LEAVING, d INITIALIZING from a), with
// fields a newer M3 adds (is_subclustered 8, subcluster_id 11) and a shard
// redirect.
func moving() *m3pb.Placement {
	inst := func(id, group string, weight uint32, shards ...*m3pb.Shard) *m3pb.Instance {
		return &m3pb.Instance{
			Id: id, IsolationGroup: group, Zone: "z1", Weight: weight,
			Endpoint: id + ".old:9000", Hostname: id + ".old", Port: 9000,
			Metadata: &m3pb.InstanceMetadata{DebugPort: 9004},
			Shards:   shards, ShardSetId: 0,
		}
	}
	redirected := shard(0, m3pb.ShardState_AVAILABLE, "")
	redirected.RedirectToShardId = wrapperspb.UInt32(1)
	redirected.CutoverNanos = 17
	a := withUnknown(inst("a", "g1", 100, shard(0, m3pb.ShardState_AVAILABLE, ""), shard(1, m3pb.ShardState_LEAVING, "")), 11, 2)
	b := inst("b", "g2", 100, redirected, shard(1, m3pb.ShardState_AVAILABLE, ""))
	c := inst("c", "g3", 50)
	c.Metadata = nil
	d := inst("d", "g3", 200, withUnknown(shard(1, m3pb.ShardState_INITIALIZING, "a"), 9, 1))
	d.Shards[0].CutoffNanos = 99
	p := &m3pb.Placement{
		Instances:     map[string]*m3pb.Instance{"a": a, "b": b, "c": c, "d": d},
		ReplicaFactor: 2, NumShards: 2, IsSharded: true, CutoverTime: 1234, MaxShardSetId: 0,
	}
	return withUnknown(p, 8, 1)
}

func ident(id, group string) Identity {
	return Identity{ID: id, Endpoint: id + ".new:9100", Hostname: id + ".new", Port: 9100, IsolationGroup: group, Zone: "z2", DebugPort: 9104}
}

func fullMapping() map[string]Identity {
	return map[string]Identity{"a": ident("A", "G1"), "b": ident("B", "G2"), "c": ident("C", "G3"), "d": ident("D", "G4")}
}

func TestRewrite(t *testing.T) {
	p := moving()
	orig := proto.Clone(p)
	got, err := Rewrite(p, fullMapping())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p, orig) {
		t.Fatal("Rewrite changed its input")
	}
	// The expected placement, built by hand from the input.
	want := moving()
	want.Instances = map[string]*m3pb.Instance{}
	for old, in := range moving().GetInstances() {
		id := fullMapping()[old]
		in.Id, in.Endpoint, in.Hostname, in.Port = id.ID, id.Endpoint, id.Hostname, id.Port
		in.IsolationGroup, in.Zone = id.IsolationGroup, id.Zone
		in.Metadata = &m3pb.InstanceMetadata{DebugPort: id.DebugPort}
		want.Instances[id.ID] = in
	}
	want.Instances["D"].Shards[0].SourceId = "A"
	if !proto.Equal(got, want) {
		t.Fatalf("rewritten:\n got %v\nwant %v", got, want)
	}
	// Spelled out: what a restore relies on.
	if len(got.GetInstances()) != 4 || got.GetInstances()["a"] != nil {
		t.Fatalf("instances not re-keyed: %v", got.GetInstances())
	}
	d := got.GetInstances()["D"]
	if d.GetShards()[0].GetSourceId() != "A" || d.GetShards()[0].GetState() != m3pb.ShardState_INITIALIZING ||
		d.GetShards()[0].GetCutoffNanos() != 99 || d.GetWeight() != 200 {
		t.Errorf("D: %v", d)
	}
	if b := got.GetInstances()["B"]; b.GetShards()[0].GetRedirectToShardId().GetValue() != 1 || b.GetShards()[0].GetCutoverNanos() != 17 {
		t.Errorf("B lost its shard 0 redirect or cutover: %v", b.GetShards()[0])
	}
	if a := got.GetInstances()["A"]; a.GetShards()[1].GetState() != m3pb.ShardState_LEAVING || a.GetPort() != 9100 ||
		a.GetMetadata().GetDebugPort() != 9104 || a.GetZone() != "z2" {
		t.Errorf("A: %v", a)
	}
	if got.GetCutoverTime() != 1234 || got.GetReplicaFactor() != 2 || !got.GetIsSharded() {
		t.Errorf("placement fields: %v", got)
	}
	// Unknown fields of the placement, an instance and a shard survive, and
	// are in the encoding.
	if len(got.ProtoReflect().GetUnknown()) == 0 || len(got.GetInstances()["A"].ProtoReflect().GetUnknown()) == 0 ||
		len(d.GetShards()[0].ProtoReflect().GetUnknown()) == 0 {
		t.Error("unknown fields dropped")
	}
	b, err := m3pb.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := m3pb.UnmarshalPlacement(b)
	if err != nil || !proto.Equal(back, got) {
		t.Fatalf("re-decoded %v (%v), want %v", back, err, got)
	}
}

func TestRewriteDebugPortWithoutMetadata(t *testing.T) {
	m := fullMapping()
	id := m["c"]
	id.DebugPort = 0
	m["c"] = id
	got, err := Rewrite(moving(), m)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetInstances()["C"].GetMetadata() != nil {
		t.Errorf("C gained metadata: %v", got.GetInstances()["C"].GetMetadata())
	}
	id.DebugPort = 9204
	m["c"] = id
	if got, err = Rewrite(moving(), m); err != nil || got.GetInstances()["C"].GetMetadata().GetDebugPort() != 9204 {
		t.Errorf("C: %v, %v", got.GetInstances()["C"], err)
	}
}

// The same identities (a restore onto the same cluster) give back an equal
// placement.
func TestRewriteSameIdentity(t *testing.T) {
	p := moving()
	m := map[string]Identity{}
	for k, in := range p.GetInstances() {
		m[k] = Identity{ID: in.GetId(), Endpoint: in.GetEndpoint(), Hostname: in.GetHostname(), Port: in.GetPort(),
			IsolationGroup: in.GetIsolationGroup(), Zone: in.GetZone(), DebugPort: in.GetMetadata().GetDebugPort()}
	}
	got, err := Rewrite(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, p) {
		t.Fatalf("got %v\nwant %v", got, p)
	}
}

func TestRewriteRefusals(t *testing.T) {
	with := func(edit func(m map[string]Identity)) map[string]Identity {
		m := fullMapping()
		edit(m)
		return m
	}
	set := func(old string, f func(*Identity)) func(map[string]Identity) {
		return func(m map[string]Identity) {
			id := m[old]
			f(&id)
			m[old] = id
		}
	}
	for _, tc := range []struct {
		name      string
		placement func() *m3pb.Placement
		mapping   map[string]Identity
		want      []string
	}{
		{"no placement", func() *m3pb.Placement { return nil }, fullMapping(), []string{"no placement"}},
		{"instance left out", moving, with(func(m map[string]Identity) { delete(m, "c") }),
			[]string{`instance "c" (c.old:9000) has no new identity`}},
		{"two left out", moving, with(func(m map[string]Identity) { delete(m, "c"); delete(m, "a") }),
			[]string{`instance "a" (a.old:9000) has no new identity`, `instance "c" (c.old:9000) has no new identity`}},
		{"empty mapping", moving, nil, []string{`"a"`, `"b"`, `"c"`, `"d"`}},
		{"unknown instance", moving, with(func(m map[string]Identity) { m["x"] = ident("X", "G9") }),
			[]string{`the mapping names instance "x", which is not in the placement (it has "a", "b", "c", "d")`}},
		{"two to one id", moving, with(set("b", func(id *Identity) { id.ID = "A" })),
			[]string{`instances "a" and "b" are all mapped to id "A"`}},
		{"two to one endpoint", moving, with(set("c", func(id *Identity) { id.Endpoint = "D.new:9100" })),
			[]string{`instances "c" and "d" are all mapped to endpoint D.new:9100`}},
		{"incomplete", moving, with(set("a", func(id *Identity) { *id = Identity{ID: "A", Endpoint: "h:1", Port: 1} })),
			[]string{`instance "a": new identity lacks hostname, isolation group, zone`}},
		{"empty id", moving, with(set("a", func(id *Identity) { id.ID = "" })),
			[]string{`instance "a": new identity lacks id`}},
		{"port differs from endpoint", moving, with(set("d", func(id *Identity) { id.Port = 9000 })),
			[]string{`instance "d": new identity has endpoint D.new:9100 but port 9000`}},
		{"endpoint without port", moving, with(set("d", func(id *Identity) { id.Endpoint = "D.new" })),
			[]string{`instance "d": new identity has endpoint "D.new", not host:port`}},
		{"debug port", moving, with(set("d", func(id *Identity) { id.DebugPort = 70000 })),
			[]string{`instance "d": new identity has debug port 70000`}},
		{"isolation groups merged", moving, with(set("b", func(id *Identity) { id.IsolationGroup = "G1" })),
			[]string{`shard 0 would have replicas on "A" and "B" all in isolation group "G1"`}},
		{"key differs from id", func() *m3pb.Placement {
			p := moving()
			p.Instances["a"].Id = "a2"
			return p
		}, fullMapping(), []string{`instance "a2" is stored under key "a"`}},
		{"source not in placement", func() *m3pb.Placement {
			p := moving()
			p.Instances["d"].Shards[0].SourceId = "gone"
			return p
		}, fullMapping(), []string{`instance "d" shard 1 names source "gone", which is not in the placement`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.placement()
			got, err := Rewrite(p, tc.mapping)
			if err == nil {
				t.Fatalf("no error; got %v", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Isolation groups that already shared replicas in the backup may keep
// sharing them (the restore does not make the placement worse).
func TestRewriteKeepsSharedGroups(t *testing.T) {
	p := moving()
	p.Instances["b"].IsolationGroup = "g1" // a and b both hold shard 0, in g1
	m := fullMapping()
	id := m["b"]
	id.IsolationGroup = "G1"
	m["b"] = id
	if _, err := Rewrite(p, m); err != nil {
		t.Fatal(err)
	}
}

// The placement a real three-node m3dbnode v1.5.0 cluster wrote, restored
// onto new ids, addresses and ports: only the identities change, the
// encoding decodes to the result, and rewriting back to the old identities
// gives M3's bytes again.
func TestRewriteRealPlacement(t *testing.T) {
	raw, err := os.ReadFile("../m3pb/testdata/placement.pb")
	if err != nil {
		t.Fatal(err)
	}
	p, err := m3pb.UnmarshalPlacement(raw)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Identity{}
	for i, old := range []string{"m3a", "m3b", "m3c"} {
		ip := fmt.Sprintf("10.1.0.%d", i+1)
		m[old] = Identity{ID: "restored-" + old, Endpoint: ip + ":19000", Hostname: ip, Port: 19000,
			IsolationGroup: "rack-" + old, Zone: "embedded", DebugPort: 19004}
	}
	got, err := Rewrite(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetInstances()) != 3 || got.GetReplicaFactor() != 3 || got.GetNumShards() != 16 {
		t.Fatalf("got %v", got)
	}
	for old, id := range m {
		in := got.GetInstances()[id.ID]
		was := p.GetInstances()[old]
		if in == nil || in.GetId() != id.ID || in.GetEndpoint() != id.Endpoint || in.GetHostname() != id.Hostname ||
			in.GetPort() != 19000 || in.GetIsolationGroup() != id.IsolationGroup || in.GetMetadata().GetDebugPort() != 19004 {
			t.Fatalf("%s → %v", old, in)
		}
		if in.GetWeight() != was.GetWeight() || len(in.GetShards()) != 16 {
			t.Errorf("%s: weight %d, %d shards", id.ID, in.GetWeight(), len(in.GetShards()))
		}
		for j, s := range in.GetShards() {
			if !proto.Equal(s, was.GetShards()[j]) {
				t.Errorf("%s shard %d: %v, was %v", id.ID, j, s, was.GetShards()[j])
			}
		}
	}
	b, err := m3pb.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := m3pb.UnmarshalPlacement(b)
	if err != nil || !proto.Equal(back, got) {
		t.Fatalf("re-decoded %v (%v)", back, err)
	}
	// A second rewrite back to the original identities restores M3's bytes.
	rev := map[string]Identity{}
	for old, id := range m {
		in := p.GetInstances()[old]
		rev[id.ID] = Identity{ID: old, Endpoint: in.GetEndpoint(), Hostname: in.GetHostname(), Port: in.GetPort(),
			IsolationGroup: in.GetIsolationGroup(), Zone: in.GetZone(), DebugPort: in.GetMetadata().GetDebugPort()}
	}
	again, err := Rewrite(got, rev)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := m3pb.Marshal(again); err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("rewritten there and back: %x (%v)\nwant M3's %x", b, err, raw)
	}
}
