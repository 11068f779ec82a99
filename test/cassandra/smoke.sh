#!/usr/bin/env bash
# End-to-end check of the Cassandra test harness (see README.md here):
# installs the jars, starts a real Cassandra node on 127.0.0.2 and (unless
# CASSANDRA_SMOKE_NODES=1) a second one on 127.0.0.3 that bootstraps into
# it, runs nodetool status, writes and reads rows over CQL with cqlcheck,
# takes `nodetool snapshot -t test1` and checks the snapshot files exist
# in both JBOD data directories, then stops the nodes and deletes their
# directories (the jar cache stays). Exits non-zero on any failure.
#
# Uses its own node names (smoke1, smoke2), but the IPs and ports are
# fixed: do not run it next to other nodes on 127.0.0.2/127.0.0.3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cass=$here/../../scripts/cassandra.sh
nodes=${CASSANDRA_SMOKE_NODES:-2}
names=(smoke1)
((nodes >= 2)) && names+=(smoke2)
tmp=$(mktemp -d)

cleanup() {
	local n
	for n in "${names[@]}"; do
		"$cass" stop "$n" || true
		"$cass" clean "$n" || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

step() { echo "== $* ($(date +%T))"; }

step install
"$cass" install

cqlcheck=$tmp/cqlcheck
(cd "$here/cqlcheck" && go build -o "$cqlcheck" .)

step "start smoke1 on 127.0.0.2"
"$cass" start smoke1 127.0.0.2
hosts=127.0.0.2 rf=1
if ((nodes >= 2)); then
	step "start smoke2 on 127.0.0.3, seed 127.0.0.2"
	"$cass" start smoke2 127.0.0.3 127.0.0.2
	hosts=127.0.0.2,127.0.0.3 rf=2
fi

step "nodetool status"
out=$("$cass" nodetool smoke1 status)
echo "$out"
up=$(grep -c '^UN ' <<<"$out" || true)
[[ $up -eq $nodes ]] || { echo "want $nodes UN nodes, got $up" >&2; exit 1; }

step "cqlcheck (rf $rf)"
"$cqlcheck" -hosts "$hosts" -keyspace smoke -rf "$rf" -rows 500

step "flush and snapshot -t test1"
for n in "${names[@]}"; do
	"$cass" nodetool "$n" flush smoke
	"$cass" nodetool "$n" snapshot -t test1 smoke
	dir=$("$cass" env "$n" | sed -n "s/^CASSANDRA_NODE_DIR=//p")
	files=$(find "$dir"/data1/smoke "$dir"/data2/smoke -path '*/snapshots/test1/*-Data.db' 2>/dev/null | wc -l)
	[[ $files -ge 1 ]] || { echo "$n: no snapshot Data.db files" >&2; exit 1; }
	echo "$n: snapshot test1 has $files Data.db file(s) across data1/data2"
done
"$cass" nodetool smoke1 listsnapshots | grep -E '^test1 +smoke ' || { echo "listsnapshots misses smoke" >&2; exit 1; }

step status
"$cass" status
echo "cassandra smoke: 1 passed, 0 failed"
