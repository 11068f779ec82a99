#!/bin/sh
# Regenerates the *.pb.go files of this package from its *.proto files.
# Needs protoc (Debian: apt-get install protobuf-compiler, which also puts
# google/protobuf/wrappers.proto under /usr/include). protoc-gen-go is
# built from crayfish's own go.mod, so the generator's version is always
# the google.golang.org/protobuf version the code is compiled with.
# Run from anywhere: go generate ./m3db/m3pb/
set -eu
cd "$(dirname "$0")"
command -v protoc >/dev/null || { echo "gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" -I . \
	--go_out=. --go_opt=paths=source_relative \
	placement.proto namespace.proto index.proto
