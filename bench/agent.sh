#!/usr/bin/env bash
# One crayfish agent, alone, through a first backup, an unchanged re-run
# and a restore of an existing directory, with each phase's wall time and
# peak RSS (the high-water mark is reset before each phase). For quick
# comparisons between builds on data already written (bench/files.sh
# generates its datasets just before measuring, so the disk is still
# writing them back during the first phases).
#
#   ./bench/agent.sh /tmp/crayfish-bench/data-large [agent flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: bench/agent.sh DIR [agent flags...]}
shift
work=${BENCH_DIR:-/tmp/crayfish-bench-agent}
bin=$PWD/bin/crayfish
go build -o "$bin" ./cmd/crayfish
rm -rf "$work"
mkdir -p "$work"
"$bin" agent --node-id bench --data-dir "$work/dd" --root "$src" --http-addr 127.0.0.1:17310 \
	--raft-addr 127.0.0.1:17311 --gossip-addr 127.0.0.1:17312 --log-level warn "$@" >"$work/agent.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
export CRAYFISH_URL=http://127.0.0.1:17310
for _ in $(seq 100); do "$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' && break; sleep 0.1; done
echo "idle: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$pid/status) RSS"
phase() { # name, then the crayfish command line
	local name=$1 t0 t1
	shift
	echo 5 >/proc/$pid/clear_refs
	t0=$(date +%s.%N)
	"$bin" "$@" --wait >/dev/null 2>&1 || { echo "$name failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	printf '%-10s %7.2f s  peak RSS %6.1f MiB\n' "$name" "$(echo "$t1 - $t0" | bc -l)" "$(awk '/VmHWM/{print $2/1024}' /proc/$pid/status)"
}
phase backup backup
phase unchanged backup
phase restore restore --target "$work/restore"
diff -r "$src" "$work/restore" >/dev/null || { echo "restore differs" >&2; exit 1; }
