#!/usr/bin/env bash
# Scale model, number of backups: what many backups in one repository
# cost (issue 17).
#
#   ./bench/scale-backups.sh                       # 5000 backups (~10 min)
#   BACKUPS=300 nice -n 15 ./bench/scale-backups.sh
#   BACKUPS=10000 STEP=1000 ./bench/scale-backups.sh
#
# One agent (files plugin, 127.0.13.202:7300-7302) backs up a tiny tree
# ($FILES files of 1 KiB) into an encrypted file:// repository, $BACKUPS
# times in a row, as fast as one client can: the cluster runs one
# operation at a time (a second POST /v1/backups answers 409 busy), so
# the backups are sequential `crayfish backup --wait` calls, and one file
# changes before each so that no two backups are alike.
#
# Every $STEP backups (default: BACKUPS/10, at most 1000) it prints
#   backups         backups made so far
#   this_s          wall time of the last backup alone
#   mean_s          mean time per backup over the last STEP
#   rate/s          backups per second over the last STEP
#   list_s          `crayfish list` (first page, 20 backups) at that point
#   describe_s      `crayfish describe` of the newest backup
#   ops_s           `GET /v1/operations` (the latest operations)
#   rss             the agent's RSS
# and then, with all $BACKUPS in the repository:
#   list_s          `crayfish list` (first page), text and --output json
#   list_all_s      `crayfish list --all` (every page)
#   cleanup_s       `crayfish cleanup --keep-last BACKUPS/10 --wait` (drops
#                   90%; cleanup garbage-collects itself afterwards)
#   gc_s            `crayfish gc --wait` after it
#   *_hwm           the agent's peak RSS in that phase (VmHWM, reset
#                   through /proc/<pid>/clear_refs before it); backups_hwm
#                   is the peak over all backups
#   raft.db         the agent's Raft log (<data_dir>/raft/raft.db) at the end
# and a markdown row for docs/performance.md. Needs curl, python3 and bc.
# The agent logs to $BENCH_DIR/agent.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

BACKUPS=${BACKUPS:-5000}
STEP=${STEP:-$((BACKUPS / 10 > 1000 ? 1000 : (BACKUPS / 10 > 0 ? BACKUPS / 10 : 1)))}
FILES=${FILES:-20}
work=${BENCH_DIR:-/tmp/crayfish-scale-backups}
IP=127.0.13.202
export CRAYFISH_URL=http://$IP:7300

for tool in curl python3 bc; do
	command -v "$tool" >/dev/null || { echo "scale-backups.sh needs $tool" >&2; exit 1; }
done
bin=$PWD/bin/crayfish
go build -o "$bin" ./cmd/crayfish
rm -rf "$work"
mkdir -p "$work/root"
pid=

fail() { # message, output file
	echo "$1" >&2
	tail -20 "$2" >&2
	tail -30 "$work/agent.log" >&2
	exit 1
}
# timed CMD...: the command's wall time in seconds (its output in $work/last.out).
timed() {
	local t0
	t0=$(now)
	"$@" >"$work/last.out" 2>&1 || fail "failed: $*" "$work/last.out"
	since "$t0"
}
# phase NAME CMD...: timed, with the agent's high-water mark reset first;
# sets phase_s and phase_hwm.
phase() {
	local name=$1
	shift
	echo 5 >"/proc/$pid/clear_refs"
	phase_s=$(timed "$@")
	cp "$work/last.out" "$work/$name.out"
	phase_hwm=$(hwm_mib "$pid")
}

stop_agent() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
trap stop_agent EXIT

for i in $(seq "$FILES"); do head -c 1024 /dev/urandom >"$work/root/f$i"; done
"$bin" init --repository "file://$work/repo" --key-file "$work/key" >/dev/null
"$bin" agent --node-id s --data-dir "$work/data" --root "$work/root" --repository "file://$work/repo" --key-file "$work/key" \
	--http-addr "$IP:7300" --raft-addr "$IP:7301" --gossip-addr "$IP:7302" --log-level warn >"$work/agent.log" 2>&1 &
pid=$!
for _ in $(seq 300); do "$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' && break; sleep 0.1; done
"$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' || fail "no leader" /dev/null

echo "$BACKUPS backups of $FILES files, a row every $STEP" >&2
fmt='%-8s %8s %8s %8s %8s %10s %7s %7s\n'
# shellcheck disable=SC2059 # the format is $fmt
printf "$fmt" backups this_s mean_s rate/s list_s describe_s ops_s rss
echo 5 >"/proc/$pid/clear_refs"
t_all=$(now)
t_step=$t_all
for i in $(seq "$BACKUPS"); do
	echo "$i" >"$work/root/f1"
	t0=$(now)
	"$bin" backup --wait --no-progress --output json >"$work/backup.out" 2>&1 || fail "backup $i failed" "$work/backup.out"
	[ "$i" = 1 ] && first_s=$(since "$t0")
	if [ $((i % STEP)) = 0 ] || [ "$i" = "$BACKUPS" ]; then
		this=$(since "$t0")
		k=$((i % STEP == 0 ? STEP : i % STEP))
		span=$(echo "$(now) - $t_step" | bc -l)
		mean=$(printf '%.3f' "$(echo "$span / $k" | bc -l)")
		rate=$(printf '%.1f' "$(echo "$k / $span" | bc -l)")
		id=$(python3 -c "import json,sys; print(json.load(sys.stdin)['backup_id'])" <"$work/backup.out")
		backups_hwm=$(hwm_mib "$pid") # the peak so far (of the backups and the earlier rows' queries)
		l=$(timed "$bin" list)
		ds=$(timed "$bin" describe "$id")
		ops=$(timed curl -fsS "$CRAYFISH_URL/v1/operations")
		# shellcheck disable=SC2059
		printf "$fmt" "$i" "$this" "$mean" "$rate" "$l" "$ds" "$ops" "$(rss_mib "$pid")MiB"
		last_mean=$mean
		t_step=$(now)
	fi
done
total_s=$(since "$t_all")
rate_all=$(printf '%.1f' "$(echo "$BACKUPS / $total_s" | bc -l)")
echo "$BACKUPS backups in $total_s s: $rate_all backups/s; peak RSS ${backups_hwm} MiB" >&2

phase list "$bin" list
list_s=$phase_s
phase listjson "$bin" list --output json
listjson_s=$phase_s
phase listall "$bin" list --all --output json
listall_s=$phase_s listall_hwm=$phase_hwm
got=$(python3 -c "import json,sys; d=json.load(sys.stdin); print(len(d['backups'] if isinstance(d, dict) else d))" <"$work/listall.out")
[ "$got" = "$BACKUPS" ] || echo "warning: list --all shows $got backups, $BACKUPS were made" >&2
keep=$((BACKUPS / 10 > 0 ? BACKUPS / 10 : 1))
phase cleanup "$bin" cleanup --keep-last "$keep" --wait --no-progress
cleanup_s=$phase_s cleanup_hwm=$phase_hwm
phase gc "$bin" gc --wait --no-progress
gc_s=$phase_s gc_hwm=$phase_hwm
got=$("$bin" list --all --output json | python3 -c "import json,sys; d=json.load(sys.stdin); print(len(d['backups'] if isinstance(d, dict) else d))")
[ "$got" = "$keep" ] || echo "warning: after cleanup --keep-last $keep, list --all shows $got backups" >&2
phase listafter "$bin" list
listafter_s=$phase_s
rss=$(rss_mib "$pid")
raft=$(stat -c %s "$work/data/raft/raft.db")

echo
printf '%-22s %s\n' "list (first page)" "$list_s s" "list --output json" "$listjson_s s" "list --all" "$listall_s s (peak RSS $listall_hwm MiB)" \
	"cleanup (keep $keep)" "$cleanup_s s (peak RSS $cleanup_hwm MiB)" "gc" "$gc_s s (peak RSS $gc_hwm MiB)" \
	"list after cleanup" "$listafter_s s" "agent RSS" "$rss MiB (peak while backing up: $backups_hwm MiB)" "raft.db" "$(human "$raft")"
echo
echo "| backups | time to make them | backups/s | first backup | last $STEP, per backup | list | list --output json | list --all | cleanup (drop 90%) | gc | agent RSS (peak) | raft.db |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| $BACKUPS | $total_s s | $rate_all | $first_s s | $last_mean s | $list_s s | $listjson_s s | $listall_s s | $cleanup_s s | $gc_s s | $rss MiB ($backups_hwm MiB) | $(human "$raft") |"
