#!/usr/bin/env bash
# Scale model, number of files: how one agent's cost grows with the number
# of files it backs up (issue 17).
#
#   ./bench/scale-files.sh                         # N = 10000 100000 1000000
#   COUNTS=10000 ./bench/scale-files.sh            # a quick check (~10 s)
#   COUNTS="10000 100000" nice -n 15 ./bench/scale-files.sh
#   COUNTS=10000000 ./bench/scale-files.sh         # needs ~52 GB free (see below)
#
# For each N, bench/scalegen writes N files of 0-2 KiB (uniform sizes,
# deterministic, incompressible, no two alike) in directories of 1000
# (generation is not measured; the tree is synced to disk before the
# agent starts, but stays in the page cache, so the first backup reads
# mostly from memory). One agent (files plugin, 127.0.13.201:7300-7302)
# backs it up into an encrypted file:// repository of its own, and per N
# the script prints:
#   idle            the agent's RSS before the first backup
#   backup_s        wall time of the first `crayfish backup --wait`
#   rerun_s         the same again with nothing changed (hash cache hits)
#   backup_hwm      the agent's peak RSS during the first backup (VmHWM,
#   rerun_hwm       reset through /proc/<pid>/clear_refs before each
#   describe_hwm    phase), the re-run, `describe --files` and the
#   plan_hwm        restore's dry run (clear_refs resets the mark to the
#                   current RSS, so a phase's peak includes what the Go
#                   heap kept from the phases before it)
#   hashcache       bytes of <data_dir>/hashcache.db after the re-run
#   filelists       bytes of the repository's meta/ packs (the file lists
#                   of both backups; the re-run's are the same blobs, so
#   snaps           this is one backup's file list) and of snapshots/
#   index           bytes of the repository's index/ segments
#   describe_s      `crayfish describe BACKUP --files` (its output goes to
#                   a file, to check it has a line per file, then deleted)
#   ls, find        "—" in the markdown rows: the CLI has no ls or find yet
#   plan_s          `crayfish restore BACKUP --dry-run --target DIR --wait`
#   list_s          `crayfish list` (the repository's backup list, first page)
# and at the end one markdown row per N for docs/performance.md. The
# tree, repository and data dir of each N are deleted before the next.
#
# A re-run that misses the hash cache is reported on stderr (the agent's
# crayfish_hash_cache_misses_total). Needs curl and python3.
#
# Disk: each file takes one 4 KiB block (most are 1-2 KiB), so the tree
# needs ~4.1 KiB × N and the repository ~1.1 KiB × N: 10 million files
# need ~52 GB. The script refuses an N that does not fit in the free space
# of $BENCH_DIR (FORCE=1 tries anyway). Agents log to $BENCH_DIR/n<N>/agent.log;
# KEEP=1 keeps each N's directory. Peak RSS grew ~1.8 KB per file up to
# 100k files (265 MiB), so 10 million files may need ~18 GiB of RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

COUNTS=${COUNTS:-10000 100000 1000000}
work=${BENCH_DIR:-/tmp/crayfish-scale-files}
IP=127.0.13.201
export CRAYFISH_URL=http://$IP:7300

bin=$PWD/bin/crayfish
for tool in curl python3 bc; do
	command -v "$tool" >/dev/null || { echo "scale-files.sh needs $tool" >&2; exit 1; }
done
go build -o "$bin" ./cmd/crayfish
go build -o "$PWD/bin/scalegen" ./bench/scalegen
rm -rf "$work"
mkdir -p "$work"
pid=

bytes_under() { # total size of the files under $1 (0 when it is missing)
	if [ -d "$1" ]; then find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; else echo 0; fi
}
misses() { # the agent's hash cache misses so far
	curl -fsS "$CRAYFISH_URL/metrics" | awk '/^crayfish_hash_cache_misses_total/{s += $2} END {printf "%d", s}'
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

stop_agent() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
trap stop_agent EXIT

# phase NAME CMD...: runs the crayfish command with the agent's high-water
# mark reset; sets phase_s and phase_hwm. A failure shows the output and
# the agent log's tail and exits.
phase() {
	local name=$1 t0
	shift
	echo 5 >"/proc/$pid/clear_refs"
	t0=$(now)
	"$@" >"$d/$name.out" 2>&1 || {
		echo "$name failed (N=$n): $*" >&2
		tail -20 "$d/$name.out" >&2
		tail -30 "$d/agent.log" >&2
		exit 1
	}
	phase_s=$(since "$t0")
	phase_hwm=$(hwm_mib "$pid")
}

rows=()
fmt='%-9s %7s %9s %8s %10s %8s %7s %10s %10s %9s %9s %10s %10s %9s %10s\n'
# shellcheck disable=SC2059 # the format is $fmt
printf "$fmt" files idle backup_s rerun_s describe_s plan_s list_s backup_hwm rerun_hwm desc_hwm plan_hwm hashcache filelists snaps index
for n in $COUNTS; do
	d=$work/n$n
	mkdir -p "$d"
	need=$((n * 5300 + (1 << 30)))
	avail=$(df -B1 --output=avail "$d" | tail -1)
	if [ "$need" -gt "$avail" ] && [ -z "${FORCE:-}" ]; then
		echo "N=$n needs ~$(human "$need") on $d, $(human "$avail") are free (FORCE=1 tries anyway)" >&2
		exit 1
	fi
	echo "N=$n: $("$PWD/bin/scalegen" -dir "$d/root" -n "$n")" >&2
	sync -f "$d/root"

	"$bin" init --repository "file://$d/repo" --key-file "$d/key" >/dev/null
	"$bin" agent --node-id s --data-dir "$d/data" --root "$d/root" --repository "file://$d/repo" --key-file "$d/key" \
		--http-addr "$IP:7300" --raft-addr "$IP:7301" --gossip-addr "$IP:7302" --log-level warn >"$d/agent.log" 2>&1 &
	pid=$!
	for _ in $(seq 300); do "$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' && break; sleep 0.1; done
	"$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' || { echo "no leader (N=$n)" >&2; tail -30 "$d/agent.log" >&2; exit 1; }

	idle=$(awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$pid/status")
	phase backup "$bin" backup --wait --no-progress --output json
	backup_s=$phase_s backup_hwm=$phase_hwm
	id=$(json "d['backup_id']" <"$d/backup.out")
	m0=$(misses)
	phase rerun "$bin" backup --wait --no-progress --output json
	rerun_s=$phase_s rerun_hwm=$phase_hwm
	m1=$(misses)
	[ "$m1" = "$m0" ] || echo "warning (N=$n): the unchanged re-run missed the hash cache for $((m1 - m0)) files" >&2
	phase describe "$bin" describe "$id" --files
	describe_s=$phase_s describe_hwm=$phase_hwm
	got=$(grep -c . "$d/describe.out" || true)
	[ "$got" -ge "$n" ] || { echo "describe --files printed $got lines for $n files (N=$n)" >&2; exit 1; }
	rm -f "$d/describe.out"
	phase plan "$bin" restore "$id" --dry-run --target "$d/restore" --wait --no-progress
	plan_s=$phase_s plan_hwm=$phase_hwm
	[ ! -e "$d/restore" ] || [ -z "$(ls -A "$d/restore")" ] || { echo "the dry run wrote into its target (N=$n)" >&2; exit 1; }
	phase list "$bin" list
	list_s=$phase_s

	cache=$(stat -c %s "$d/data/hashcache.db")
	meta=$(bytes_under "$d/repo/meta")
	snaps=$(bytes_under "$d/repo/snapshots")
	index=$(bytes_under "$d/repo/index")
	stop_agent

	# shellcheck disable=SC2059
	printf "$fmt" "$n" "${idle}MiB" \
		"$backup_s" "$rerun_s" "$describe_s" "$plan_s" "$list_s" "${backup_hwm}MiB" "${rerun_hwm}MiB" \
		"${describe_hwm}MiB" "${plan_hwm}MiB" "$(human "$cache")" "$(human "$meta")" "$(human "$snaps")" "$(human "$index")"
	rows+=("| $n | $backup_s s | $rerun_s s | $backup_hwm MiB | $rerun_hwm MiB | $(human "$cache") | $(human "$meta") | $(human "$index") | $describe_s s ($describe_hwm MiB) | — | — | $plan_s s ($plan_hwm MiB) | $list_s s |")
	[ -n "${KEEP:-}" ] || rm -rf "$d"
done

echo
echo "| files | first backup | unchanged re-run | backup peak RSS | re-run peak RSS | hash cache | file lists (meta/) | index/ | describe --files | ls | find | restore plan (dry run) | list |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"
printf '%s\n' "${rows[@]}"
