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
# every data and index fileset file after it equals the one before the
# backup (commit logs and snapshot filesets are left out of the check:
# the running node writes them all the time). Then restic's backup,
# re-run and restore of the same directory (node stopped, so it reads a
# still tree), with /usr/bin/time's peak RSS, restic's restore checked
# the same way; both repositories' sizes, the ratios crayfish/restic and
# a Markdown table of it all (BENCH_TABLE=file also writes it there).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

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
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
"$script" check >/dev/null || { echo "m3dbnode/etcd missing: run $script install" >&2; exit 1; }
go build -o "$bin" ./cmd/crayfish
filesetgen=${CRAYFISH_M3DB_CACHE:-$HOME/.cache/crayfish/m3db}/v1.5.0/filesetgen

cleanup() {
	if [[ -n ${agent_pid:-} ]]; then kill "$agent_pid" 2>/dev/null || true; fi
	"$script" stop b1 >/dev/null 2>&1 || true
	"$script" stop etcd >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

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
# The node also writes empty data filesets for the blocks in retention
# that hold no data: count the ones with data.
kept=$(find "$data/data/bench" -name '*-data.db' -size +0 | wc -l)
all=$(find "$data/data/bench" -name '*-checkpoint.db' | wc -l)
fileset_bytes=$(du -sb "$data/data" | cut -f1)
echo "node bootstrapped; $kept data filesets with data (+$((all - kept)) empty ones the node wrote), data dir $(du -sm "$data" | cut -f1) MiB (data filesets $((fileset_bytes / 1048576)) MiB)"
((kept == SHARDS * BLOCKS)) || { echo "the node kept $kept of $((SHARDS * BLOCKS)) filesets" >&2; exit 1; }
# The restore check: sha256 of every data and index fileset file (M3
# writes index filesets itself once the data filesets are bootstrapped).
# Commit logs and snapshot filesets are left out: the running node
# appends to the one and rewrites the other all the time, and the
# restored node starts writing its own before the check can run.
sums() { # dir file: sorted "sha256  path" of its data and index filesets
	(cd "$1" && find data index -type f -name 'fileset-*' -print0 | sort -z | xargs -0 sha256sum) >"$2"
}
check_sums() { # what file
	if ! cmp -s "$work/sums.before" "$2"; then
		echo "$1: fileset files differ from before the backup:" >&2
		diff "$work/sums.before" "$2" | head -20 >&2
		exit 1
	fi
	echo "$1 verified: $(wc -l <"$2") data and index fileset files equal ($(sha256sum <"$2" | cut -c1-16))"
}
# The node writes its index filesets after it reports bootstrapped: wait
# until the index is there and has stopped changing.
prev=
for _ in $(seq 60); do
	sums "$data" "$work/sums.before"
	cur=$(sha256sum <"$work/sums.before")
	if [[ $cur == "$prev" ]] && grep -q ' index/' "$work/sums.before"; then break; fi
	prev=$cur
	sleep 2
done
echo "before the backup: $(grep -c ' data/' "$work/sums.before") data and $(grep -c ' index/' "$work/sums.before") index fileset files"

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
	[[ -n ${3:-} ]] || echo "$1 $rss" >>"$work/rss.crayfish"
	printf '%-30s %8.1f s %8.1f MB/s   peak RSS %s MiB\n' "$1" "$2" "$(echo "$fileset_bytes / 1000000 / $2" | bc -l)" "$rss"
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
sums "$data" "$work/sums.crayfish"
check_sums "crayfish restore" "$work/sums.crayfish"
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=
cf_repo=$(du -sb "$work/repo" | cut -f1)
cf_rss=$(awk '{print $NF}' "$work/rss.crayfish" | sort -n | tail -1)

table() { # the Markdown table; restic's columns only when it ran
	local r=${r_backup:+1}
	row() { # name crayfish restic ratio
		if [[ -n $r ]]; then echo "| $1 | $2 | $3 | $4 |"; else echo "| $1 | $2 |"; fi
	}
	row phase crayfish restic "crayfish ÷ restic"
	row --- ---: ---: ---:
	row "first backup" "$(fmt_t "$cf_backup")" "$(fmt_t "${r_backup:-1}")" "$(ratio "$cf_backup" "${r_backup:-1}")"
	row "unchanged re-run" "$(fmt_t "$cf_rerun")" "$(fmt_t "${r_rerun:-1}")" "$(ratio "$cf_rerun" "${r_rerun:-1}")"
	row "restore (crayfish: the full M3DB restore)" "$(fmt_t "$cf_restore")" "$(fmt_t "${r_restore:-1}")" "$(ratio "$cf_restore" "${r_restore:-1}")"
	row "repository" "$((cf_repo / 1048576)) MiB" "$((${r_repo:-1} / 1048576)) MiB" "$(ratio "$cf_repo" "${r_repo:-1}")"
	row "peak RSS (crayfish: agent VmHWM; restic: its largest command)" "$cf_rss MiB" "${r_rss:-} MiB" "$(ratio "$cf_rss" "${r_rss:-1}")"
}
fmt_t() { printf '%.1f s (%.0f MB/s)' "$1" "$(echo "$fileset_bytes / 1000000 / $1" | bc -l)"; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
finish() {
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	table | tee "${BENCH_TABLE:-/dev/null}"
}

if ! command -v restic >/dev/null; then
	echo "restic: not installed (apt-get install restic) — no comparison"
	finish
	exit 0
fi
if [[ ! -x /usr/bin/time ]]; then
	echo "/usr/bin/time: not installed (apt-get install time) — no restic comparison"
	finish
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
	echo "$(($(tail -1 "$work/rss") / 1024))" >>"$work/rss.restic"
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
r_rss=$(sort -n "$work/rss.restic" | tail -1)
sums "$work/restic-restore$data" "$work/sums.restic"
check_sums "restic restore" "$work/sums.restic"
printf 'repository size: crayfish %d MiB, restic %d MiB\n' $((cf_repo / 1048576)) $((r_repo / 1048576))
printf 'ratios crayfish/restic: backup %.2f, unchanged re-run %.2f, restore %.2f (crayfish: stop, download, etcd, start, bootstrap, read-back), repository %.2f\n' \
	"$(echo "$cf_backup / $r_backup" | bc -l)" "$(echo "$cf_rerun / $r_rerun" | bc -l)" \
	"$(echo "$cf_restore / $r_restore" | bc -l)" "$(echo "$cf_repo / $r_repo" | bc -l)"
finish
