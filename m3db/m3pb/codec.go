package m3pb

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// PlacementKey is the etcd key of a service's placement.
func PlacementKey(env, service string) string {
	return "_sd.placement/" + env + "/" + service
}

// NamespacesKey is the etcd key of M3DB's namespace registry.
func NamespacesKey(env string) string {
	return "_kv/" + env + "/m3db.node.namespaces"
}

// Marshal encodes m the way M3 does: known fields in field-number order,
// map entries sorted by key (deterministic), then the unknown fields as
// they were read.
func Marshal(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// UnmarshalPlacement decodes a placement, keeping unknown fields.
func UnmarshalPlacement(b []byte) (*Placement, error) {
	p := new(Placement)
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("m3pb: decoding a placement (%d bytes): %w", len(b), err)
	}
	return p, nil
}

// UnmarshalRegistry decodes a namespace registry, keeping unknown fields.
func UnmarshalRegistry(b []byte) (*Registry, error) {
	r := new(Registry)
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("m3pb: decoding a namespace registry (%d bytes): %w", len(b), err)
	}
	return r, nil
}

// UnmarshalIndexDigests decodes an index fileset's digest file.
func UnmarshalIndexDigests(b []byte) (*IndexDigests, error) {
	d := new(IndexDigests)
	if err := proto.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("m3pb: decoding an index digest file (%d bytes): %w", len(b), err)
	}
	return d, nil
}

// UnmarshalIndexVolumeInfo decodes an index fileset's info file.
func UnmarshalIndexVolumeInfo(b []byte) (*IndexVolumeInfo, error) {
	v := new(IndexVolumeInfo)
	if err := proto.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("m3pb: decoding an index info file (%d bytes): %w", len(b), err)
	}
	return v, nil
}
