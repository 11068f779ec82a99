package m3pb

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The testdata files are raw etcd values and index fileset files taken from
// a real three-node m3dbnode v1.5.0 cluster (testdata/README.md).

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noUnknown fails if m or any message inside it holds unknown fields: this
// package models everything M3 v1.5.0 wrote into the testdata.
func noUnknown(t *testing.T, what string, m proto.Message) {
	t.Helper()
	var walk func(path string, m protoreflect.Message)
	walk = func(path string, m protoreflect.Message) {
		if u := m.GetUnknown(); len(u) > 0 {
			t.Errorf("%s: %s has %d bytes of unknown fields", what, path, len(u))
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			switch {
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(fmt.Sprintf("%s[%v]", p, k.Interface()), mv.Message())
					return true
				})
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(fmt.Sprintf("%s[%d]", p, i), v.List().Get(i).Message())
				}
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(p, v.Message())
			}
			return true
		})
	}
	walk(what, m.ProtoReflect())
}

func TestRealPlacementRoundTrip(t *testing.T) {
	raw := readTestdata(t, "placement.pb")
	p, err := UnmarshalPlacement(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, raw) {
		t.Fatalf("re-encoded placement differs from M3's bytes:\n got %x\nwant %x", out, raw)
	}
	noUnknown(t, "placement", p)

	// What the cluster was made with: init-cluster on three nodes m3a, m3b,
	// m3c on 127.0.41.2-4, RF 3, 16 shards, every replica AVAILABLE.
	if p.GetReplicaFactor() != 3 || p.GetNumShards() != 16 || !p.GetIsSharded() || p.GetIsMirrored() {
		t.Fatalf("placement: rf %d, shards %d, sharded %v, mirrored %v; want 3, 16, true, false",
			p.GetReplicaFactor(), p.GetNumShards(), p.GetIsSharded(), p.GetIsMirrored())
	}
	if len(p.GetInstances()) != 3 {
		t.Fatalf("%d instances, want 3", len(p.GetInstances()))
	}
	for i, id := range []string{"m3a", "m3b", "m3c"} {
		in := p.GetInstances()[id]
		if in == nil {
			t.Fatalf("no instance %s in %v", id, p.GetInstances())
		}
		ip := fmt.Sprintf("127.0.41.%d", i+2)
		if in.GetId() != id || in.GetIsolationGroup() != id || in.GetZone() != "embedded" || in.GetWeight() != 1 ||
			in.GetEndpoint() != ip+":9000" || in.GetHostname() != ip || in.GetPort() != 9000 {
			t.Errorf("instance %s: %v", id, in)
		}
		// M3 writes an (empty) metadata message: it must survive decoding.
		if in.GetMetadata() == nil || in.GetMetadata().GetDebugPort() != 0 {
			t.Errorf("instance %s: metadata %v, want present with debug port 0", id, in.GetMetadata())
		}
		if len(in.GetShards()) != 16 {
			t.Fatalf("instance %s has %d shards, want 16", id, len(in.GetShards()))
		}
		for j, s := range in.GetShards() {
			if s.GetId() != uint32(j) || s.GetState() != ShardState_AVAILABLE || s.GetSourceId() != "" || s.GetRedirectToShardId() != nil {
				t.Errorf("instance %s shard %d: %v", id, j, s)
			}
		}
	}
}

func TestRealRegistryRoundTrip(t *testing.T) {
	raw := readTestdata(t, "namespaces.pb")
	r, err := UnmarshalRegistry(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, raw) {
		t.Fatalf("re-encoded registry differs from M3's bytes:\n got %x\nwant %x", out, raw)
	}
	noUnknown(t, "registry", r)

	// init-cluster metrics:12h events:24h:4h: the coordinator picks a 30m
	// block for 12h; bufferPast 10m, bufferFuture 2m; marked ready.
	want := map[string]struct{ retention, block time.Duration }{
		"metrics": {12 * time.Hour, 30 * time.Minute},
		"events":  {24 * time.Hour, 4 * time.Hour},
	}
	if len(r.GetNamespaces()) != len(want) {
		t.Fatalf("namespaces %v, want %v", r.GetNamespaces(), want)
	}
	for name, w := range want {
		ns := r.GetNamespaces()[name]
		if ns == nil {
			t.Fatalf("no namespace %s", name)
		}
		ro := ns.GetRetentionOptions()
		if got := time.Duration(ro.GetRetentionPeriodNanos()); got != w.retention {
			t.Errorf("%s: retention %s, want %s", name, got, w.retention)
		}
		if got := time.Duration(ro.GetBlockSizeNanos()); got != w.block {
			t.Errorf("%s: block size %s, want %s", name, got, w.block)
		}
		if time.Duration(ro.GetBufferPastNanos()) != 10*time.Minute || time.Duration(ro.GetBufferFutureNanos()) != 2*time.Minute {
			t.Errorf("%s: buffer past %d, future %d", name, ro.GetBufferPastNanos(), ro.GetBufferFutureNanos())
		}
		io := ns.GetIndexOptions()
		if !io.GetEnabled() || time.Duration(io.GetBlockSizeNanos()) != w.block {
			t.Errorf("%s: index options %v, want enabled with block %s", name, io, w.block)
		}
		if !ns.GetBootstrapEnabled() || !ns.GetFlushEnabled() || !ns.GetWritesToCommitLog() || !ns.GetCleanupEnabled() ||
			ns.GetRepairEnabled() || !ns.GetSnapshotEnabled() || ns.GetColdWritesEnabled() {
			t.Errorf("%s: flags %v", name, ns)
		}
		if ns.GetStagingState().GetStatus() != StagingStatus_READY {
			t.Errorf("%s: staging state %v, want READY", name, ns.GetStagingState())
		}
		// Present but false, and one aggregation that is not aggregated.
		if c := ns.GetCacheBlocksOnRetrieve(); c == nil || c.GetValue() {
			t.Errorf("%s: cacheBlocksOnRetrieve %v, want present and false", name, c)
		}
		if a := ns.GetAggregationOptions().GetAggregations(); len(a) != 1 || a[0].GetAggregated() {
			t.Errorf("%s: aggregations %v", name, a)
		}
	}
}

// Appending fields after a message's last known field, M3-style, keeps
// re-encoding byte-identical; fields in the middle come back after the
// known ones, with the same bytes, and decode to an equal message.
func TestUnknownFieldsKept(t *testing.T) {
	// A placement from a newer M3: is_subclustered=8, instances_per_subcluster=9
	// on the placement, subcluster_id=11 on an instance.
	var inst []byte
	inst = str(inst, 1, "a")
	inst = str(inst, 5, "10.0.0.1:9000")
	inst = msg(inst, 6, str(varint(nil, 1, 7), 3, "b")) // shard 7 from b
	inst = varint(inst, 9, 9000)
	inst = msg(inst, 10, varint(nil, 1, 9004))
	inst = varint(inst, 11, 5) // subcluster_id: unknown
	entry := msg(str(nil, 1, "a"), 2, inst)
	raw := msg(nil, 1, entry)
	raw = varint(raw, 2, 1)
	raw = varint(raw, 8, 1) // is_subclustered: unknown
	raw = varint(raw, 9, 3) // instances_per_subcluster: unknown

	p, err := UnmarshalPlacement(raw)
	if err != nil {
		t.Fatal(err)
	}
	a := p.GetInstances()["a"]
	if a.GetEndpoint() != "10.0.0.1:9000" || a.GetMetadata().GetDebugPort() != 9004 || a.GetShards()[0].GetSourceId() != "b" {
		t.Fatalf("decoded %v", p)
	}
	if len(p.ProtoReflect().GetUnknown()) == 0 || len(a.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("unknown fields dropped: placement %x, instance %x", p.ProtoReflect().GetUnknown(), a.ProtoReflect().GetUnknown())
	}
	// A rewrite (as a restore does) keeps them too.
	a.Port = 9100
	out, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(raw, varint(nil, 9, 9000), varint(nil, 9, 9100), 1)
	if !bytes.Equal(out, want) {
		t.Fatalf("re-encoded:\n got %x\nwant %x", out, want)
	}

	// A namespace with schemaOptions (9), runtimeOptions (11) and
	// extendedOptions (1000): the middle ones move after the known fields.
	schema := msg(nil, 9, str(nil, 2, "deploy-1"))
	runtime := msg(nil, 11, msg(nil, 1, fixed64(nil, 1, 0x4000000000000000)))
	ext := msg(nil, 1000, str(nil, 1, "fancy"))
	var opts []byte
	opts = varint(opts, 1, 1)
	opts = msg(opts, 6, varint(nil, 1, int64(time.Hour)))
	opts = append(opts, schema...)
	opts = varint(opts, 10, 1)
	opts = append(opts, runtime...)
	opts = msg(opts, 14, varint(nil, 1, 2))
	opts = append(opts, ext...)
	reg := msg(nil, 1, msg(str(nil, 1, "ns"), 2, opts))

	r, err := UnmarshalRegistry(reg)
	if err != nil {
		t.Fatal(err)
	}
	ns := r.GetNamespaces()["ns"]
	if time.Duration(ns.GetRetentionOptions().GetRetentionPeriodNanos()) != time.Hour || !ns.GetColdWritesEnabled() ||
		ns.GetStagingState().GetStatus() != StagingStatus_READY {
		t.Fatalf("decoded %v", ns)
	}
	unknown := ns.ProtoReflect().GetUnknown()
	if wantU := append(append(append([]byte{}, schema...), runtime...), ext...); !bytes.Equal(unknown, wantU) {
		t.Fatalf("unknown fields %x, want %x", unknown, wantU)
	}
	out, err = Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var known []byte
	known = varint(known, 1, 1)
	known = msg(known, 6, varint(nil, 1, int64(time.Hour)))
	known = varint(known, 10, 1)
	known = msg(known, 14, varint(nil, 1, 2))
	if want := msg(nil, 1, msg(str(nil, 1, "ns"), 2, append(known, unknown...))); !bytes.Equal(out, want) {
		t.Fatalf("re-encoded registry:\n got %x\nwant %x", out, want)
	}
	back, err := UnmarshalRegistry(out)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, r) {
		t.Fatalf("decoded again: %v, want %v", back, r)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	bad := []byte{0x0a, 0x05, 0x01} // field 1, length 5, 1 byte
	if _, err := UnmarshalPlacement(bad); err == nil {
		t.Error("placement: no error for truncated bytes")
	}
	if _, err := UnmarshalRegistry(bad); err == nil {
		t.Error("registry: no error for truncated bytes")
	}
	if _, err := UnmarshalIndexDigests(bad); err == nil {
		t.Error("index digests: no error for truncated bytes")
	}
	if _, err := UnmarshalIndexVolumeInfo(bad); err == nil {
		t.Error("index info: no error for truncated bytes")
	}
}

func TestKeys(t *testing.T) {
	if k := PlacementKey("default_env", "m3db"); k != "_sd.placement/default_env/m3db" {
		t.Error(k)
	}
	if k := NamespacesKey("default_env"); k != "_kv/default_env/m3db.node.namespaces" {
		t.Error(k)
	}
}

// Wire helpers for hand-made messages.

func varint(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func fixed64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func str(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func msg(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
