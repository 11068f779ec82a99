// Package m3pb holds crayfish's own protobuf descriptions of the M3 v1.5.0
// data the M3DB plugin reads and writes: the placement
// (_sd.placement/<env>/<service> in etcd), the namespace registry
// (_kv/<env>/m3db.node.namespaces) and an index fileset's info and digest
// files. The .proto files here carry M3's field numbers and wire types
// under our own names; the *.pb.go files are generated from them by
// gen.sh (go generate; see README.md) and committed, so building and
// testing need no tool.
//
// Decoding keeps every field this package does not model as an unknown
// field, and Marshal writes it back, so a placement or registry from a
// newer M3 survives a read-modify-write. Marshal encodes as M3 does (fields
// in number order, map entries sorted by key): a value read from a real
// M3DB v1.5.0 re-encodes to the same bytes (testdata).
//
// It owns only the encoding. It must not talk to etcd or to M3DB, touch
// files, or know about restores (the placement rewrite is in
// m3db/placement, filesets in m3db/fileset); it imports nothing of crayfish.
package m3pb

//go:generate ./gen.sh
