#!/usr/bin/env bash
# M3DB backup/restore benchmark: one real m3dbnode v1.5.0 (RF 1, 8
# shards, one etcd; scripts/m3db.sh) holding about $MIB MiB of data
# filesets, written by M3's own fileset writer (filesetgen -random:
# values m3tsz cannot compress) over 12 past 2-hour blocks; backed up and
# restored by crayfish (one agent, m3db plugin, file:// repository) and
# by restic on the same data directory, in the same run.
#
#   ./bench/m3db.sh              # 1 GiB
#   MIB=256 ./bench/m3db.sh      # quicker
#
# Prints wall time, MB/s and the agent's peak RSS (VmHWM so far) for a
# first backup, an unchanged re-run and a full restore of the wiped node
# (stop, data dir made equal to the backup, etcd written, start, wait
# until bootstrapped, read-back); the restore is checked: the sha256 of
# every data fileset file after it equals the one before the backup.
# Then restic's backup, re-run and restore of the same directory (node
# stopped, so it reads a still tree), with /usr/bin/time's peak RSS, and
# both repositories' sizes and the ratios crayfish/restic.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${MIB:-1024}
ETCD_IP=${BENCH_M3DB_ETCD_IP:-127.0.6.1}
IP=${BENCH_M3DB_IP:-127.0.6.2}
work=${BENCH_DIR:-/tmp/crayfish-m3db-bench}
export CRAYFISH_M3DB_NODES=$work/nodes
export M3DB_NUM_SHARDS=8 M3DB_REPLICATION_FACTOR=1
SHARDS=8 BLOCKS=12 SERIES=200
bin=$PWD/bin/crayfish
script=$PWD/scripts/m3db.sh
node_dir=$work/nodes/b1
data=$node_dir/data
command -v bc >/dev/null || { echo "bc not found (apt-get install bc)" >&2; exit 1; }
"$script" check >/dev/null || { echo "m3dbnode/etcd missing: run $script install" >&2; exit 1; }
go build -o "$bin" ./cmd/crayfish
filesetgen=${CRAYFISH_M3DB_CACHE:-$HOME/.cache/crayfish/m3db}/v1.5.0/filesetgen

cleanup() {
	[[ -n ${agent_pid:-} ]] && kill "$agent_pid" 2>/dev/null || true
	"$script" stop b1 >/dev/null 2>&1 || true
	"$script" stop etcd >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"

# The node and its namespace, then the filesets, written while it is
# stopped. Points per series fill MIB over SHARDS*BLOCKS filesets of
# SERIES series (~8.3 bytes a random datapoint after m3tsz).
"$script" etcd-start etcd "$ETCD_IP" >/dev/null
"$script" start b1 "$IP" --coordinator >/dev/null
"$script" init-cluster bench:48h:2h >/dev/null
"$script" stop b1 >/dev/null
points=$((MIB * 1048576 / (SHARDS * BLOCKS * SERIES * 83 / 10)))
((points <= 7000)) || { echo "MIB=$MIB needs $points points a series; at most 7000 fit a 2h block at 1 s" >&2; exit 1; }
bs=7200
t0=$(date +%s.%N)
for ((b = 0; b < BLOCKS; b++)); do
	block=$((($(date +%s) / bs - 2 - b) * bs))000000000
	for ((s = 0; s < SHARDS; s++)); do
		"$filesetgen" -dir "$data" -ns bench -shard "$s" -block "$block" -blocksize 2h \
			-series "$SERIES" -points "$points" -random >/dev/null
	done
done
echo "filesets: $((SHARDS * BLOCKS)) written ($points points x $SERIES series each) in $(echo "$(date +%s.%N) - $t0" | bc -l | xargs printf '%.1f') s"
"$script" start b1 "$IP" --coordinator >/dev/null
"$script" wait b1 600 >/dev/null
kept=$(find "$data/data/bench" -name '*-checkpoint.db' -size +0 | wc -l)
fileset_bytes=$(du -sb "$data/data" | cut -f1)
echo "node bootstrapped; $kept data filesets, data dir $(du -sm "$data" | cut -f1) MiB (data filesets $((fileset_bytes / 1048576)) MiB)"
((kept >= SHARDS * BLOCKS)) || { echo "the node kept $kept of $((SHARDS * BLOCKS)) filesets" >&2; exit 1; }
sums() { (cd "$data" && find data -type f -name 'fileset-*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }
before=$(sums)

"$bin" init --repository "file://$work/repo" --key-file "$work/repo.key" >/dev/null
"$bin" agent --node-id b1 --data-dir "$work/agent" --repository "file://$work/repo" --key-file "$work/repo.key" \
	--http-addr 127.0.0.1:7490 --raft-addr 127.0.0.1:7491 --gossip-addr 127.0.0.1:7492 \
	--plugin m3db --m3db-etcd-endpoints "$ETCD_IP:2379" --m3db-data-dir "$data" --m3db-instance-id b1 \
	--m3db-endpoint "$IP:9000" --m3db-isolation-group b1 --m3db-zone embedded \
	--m3db-health-url "http://$IP:9002/health" --m3db-cluster-url "http://$IP:9003" \
	--m3db-start-command "$script start b1 $IP --coordinator" --m3db-stop-command "$script stop b1" \
	>"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
	"$bin" --url http://127.0.0.1:7490 cluster >/dev/null 2>&1 && break
	sleep 0.2
done

report() { # name seconds [peak MiB]
	local rss=${3:-$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$agent_pid/status")}
	printf '%-30s %8.1f s %8.1f MB/s   peak RSS %s MiB\n' "$1" "$2" "$(echo "$fileset_bytes / 1000000 / $2" | bc -l)" "$rss"
}
timeit() {
	local t0
	t0=$(date +%s.%N)
	"$@" >"$work/last.out" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/last.out" >&2; tail -30 "$work/agent.log" >&2; exit 1; }
	echo "$(date +%s.%N) - $t0" | bc -l
}
cf() { "$bin" --url http://127.0.0.1:7490 "$@"; }

t=$(timeit cf backup --wait --no-progress)
report "crayfish backup" "$t"
cf_backup=$t
t=$(timeit cf backup --wait --no-progress)
report "crayfish backup (unchanged)" "$t"
cf_rerun=$t
backup=$(cf list --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
"$script" stop b1 >/dev/null
rm -rf "$data"
t=$(timeit cf restore "$backup" --wait --no-progress)
report "crayfish full restore" "$t"
cf_restore=$t
after=$(sums)
[[ $after == "$before" ]] || { echo "crayfish restore: fileset checksums differ ($after, want $before)" >&2; exit 1; }
echo "crayfish restore verified: every data fileset file equal ($after)"
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=
cf_repo=$(du -sb "$work/repo" | cut -f1)

if ! command -v restic >/dev/null; then
	echo "restic: not installed (apt-get install restic) — no comparison"
	exit 0
fi
# restic reads the data dir with the node stopped: a still tree (crayfish
# backs the running node up from hard links).
"$script" stop b1 >/dev/null
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
restic init --repo "$work/restic" >/dev/null
rtime() { # name: runs the rest, prints time and peak RSS
	local name=$1 t0 t
	shift
	t0=$(date +%s.%N)
	/usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/last.out" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/last.out" >&2; exit 1; }
	t=$(echo "$(date +%s.%N) - $t0" | bc -l)
	report "$name" "$t" "$(($(tail -1 "$work/rss") / 1024))"
	echo "$t" >"$work/t"
}
rtime "restic backup" restic --repo "$work/restic" backup --host b1 "$data"
r_backup=$(<"$work/t")
rtime "restic backup (unchanged)" restic --repo "$work/restic" backup --host b1 "$data"
r_rerun=$(<"$work/t")
rm -rf "$work/restic-restore"
rtime "restic restore" restic --repo "$work/restic" restore latest --target "$work/restic-restore"
r_restore=$(<"$work/t")
r_repo=$(du -sb "$work/restic" | cut -f1)
printf 'repository size: crayfish %d MiB, restic %d MiB\n' $((cf_repo / 1048576)) $((r_repo / 1048576))
printf 'ratios crayfish/restic: backup %.2f, unchanged re-run %.2f, restore %.2f (crayfish: stop, download, etcd, start, bootstrap, read-back), repository %.2f\n' \
	"$(echo "$cf_backup / $r_backup" | bc -l)" "$(echo "$cf_rerun / $r_rerun" | bc -l)" \
	"$(echo "$cf_restore / $r_restore" | bc -l)" "$(echo "$cf_repo / $r_repo" | bc -l)"
