#!/usr/bin/env bash
# Side-by-side file-tree backup benchmark: crayfish vs restic vs borg, on
# the same datasets, file:// repositories on the same disk, in one run.
#
#   ./bench/files.sh                 # the issue's datasets (see below)
#   SMALL_FILES=10000 LARGE_MIB=512 ./bench/files.sh   # a quicker run
#   TOOLS=crayfish DATASETS=small PROFILE=/tmp/prof ./bench/files.sh
#       # only some tools and datasets; PROFILE saves a CPU profile of the
#       # agent per crayfish phase (<dir>/<dataset>-<phase>.pprof, taken
#       # through debug_pprof over PROFILE_SECONDS, default 40, after the
#       # phase starts; the phase's own timing is unaffected)
#
# Datasets: "small" = $SMALL_FILES (100,000) files of 1-8 KiB in 100 dirs;
#           "large" = $LARGE_MIB (1,024) MiB of random data in 64 MiB files.
# Per tool and dataset it prints wall time, MB/s, files/s and peak RSS of
# a first backup, an unchanged re-run, a re-run after rewriting 1% of the
# files, a restore into an empty dir, and a check that reads every byte
# back (crayfish drill: restore into scratch space and compare; restic
# check --read-data; borg check --verify-data), plus the repository size. restic and borg come from Debian packages
# (apt-get install restic borgbackup); a missing peer is reported, not faked.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL_FILES=${SMALL_FILES:-100000}
LARGE_MIB=${LARGE_MIB:-1024}
TOOLS=${TOOLS:-crayfish restic borg}
DATASETS=${DATASETS:-small large}
PROFILE=${PROFILE:-}
PROFILE_SECONDS=${PROFILE_SECONDS:-40}
work=${BENCH_DIR:-/tmp/crayfish-bench}
# The peers come from Debian packages; install them when missing (as root).
for pkg in restic:restic borg:borgbackup; do
	case " $TOOLS " in *" ${pkg%%:*} "*) ;; *) continue ;; esac
	if ! command -v "${pkg%%:*}" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkg#*:}" >/dev/null || echo "could not install ${pkg#*:}" >&2
	fi
done

bin=$PWD/bin/crayfish
go build -o "$bin" ./cmd/crayfish
rm -rf "$work"
mkdir -p "$work"

gen() {
	python3 - "$work" "$SMALL_FILES" "$LARGE_MIB" <<'PY'
import os, random, sys
work, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(42)
for i in range(n):
    d = os.path.join(work, "data-small", "d%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    size = r.randint(1024, 8192)
    # half random, half compressible text
    data = os.urandom(size) if i % 2 else (("row %d;" % (i % 97)) * (size // 7 + 1)).encode()[:size]
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(data)
d = os.path.join(work, "data-large")
os.makedirs(d, exist_ok=True)
for i in range((mib + 63) // 64):
    with open(os.path.join(d, "big%03d.bin" % i), "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
PY
}
echo "generating datasets in $work (small: $SMALL_FILES files, large: $LARGE_MIB MiB)"
gen

now() { date +%s.%N; }

# change1pct DIR: rewrite every 100th file with new random bytes of the same size.
change1pct() {
	python3 - "$1" <<'PY'
import os, sys
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
for p in files[::100]:
    n = os.path.getsize(p)
    with open(p, "wb") as f:
        f.write(os.urandom(n))
PY
}
mib_of() { du -sb "$1" | awk '{printf "%.1f", $1/1048576}'; }
nfiles() { find "$1" -type f | wc -l; }

printf '\n%-8s %-6s %-10s %9s %9s %10s %10s %10s\n' tool data phase seconds MB/s files/s peakRSS_MiB repo_MiB
row() { # tool data phase seconds bytes files rss_kib repo
	awk -v t="$1" -v d="$2" -v p="$3" -v s="$4" -v b="$5" -v f="$6" -v r="$7" -v repo="$8" 'BEGIN{
		printf "%-8s %-6s %-10s %9.2f %9.1f %10.0f %10.1f %10s\n", t, d, p, s, (b/1e6)/s, f/s, r/1024, repo }'
}

# timed CMD...: runs CMD under /usr/bin/time, sets secs and rss (KiB).
timed() {
	local t0 t1
	t0=$(now)
	/usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }
	t1=$(now)
	secs=$(echo "$t1 - $t0" | bc -l)
	rss=$(tail -1 "$work/rss")
}

bench_crayfish() { # dataset
	local ds=$1 src=$work/data-$1 dd=$work/cf-$1 port_http=17300 port_raft=17301
	local bytes files
	bytes=$(du -sb "$src" | cut -f1)
	files=$(nfiles "$src")
	"$bin" agent --node-id bench --data-dir "$dd" --root "$src" --http-addr 127.0.0.1:$port_http \
		--raft-addr 127.0.0.1:$port_raft --log-level warn ${PROFILE:+--debug-pprof} >"$work/cf-agent-$ds.log" 2>&1 &
	local pid=$!
	export CRAYFISH_URL=http://127.0.0.1:$port_http
	for _ in $(seq 100); do "$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' && break; sleep 0.1; done
	echo "crayfish agent idle before the first phase: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$pid/status) RSS"
	# The agent does the work; its peak RSS is read from /proc after each phase.
	local t0 t1
	phase() { # name, then the crayfish command line
		local name=$1 prof=
		shift
		if [ -n "$PROFILE" ]; then
			mkdir -p "$PROFILE"
			curl -s -o "$PROFILE/$ds-$name.pprof" "$CRAYFISH_URL/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
			prof=$!
		fi
		# Peak RSS per phase: reset the agent's high-water mark first.
		echo 5 >/proc/$pid/clear_refs
		t0=$(now); "$bin" "$@" --wait >/dev/null 2>&1; t1=$(now)
		row crayfish "$ds" "$name" "$(echo "$t1 - $t0" | bc -l)" "$bytes" "$files" "$(awk '/VmHWM/{print $2}' /proc/$pid/status)" "$(mib_of "$dd/repository")"
		if [ -n "$prof" ]; then wait "$prof"; fi
	}
	phase backup backup
	phase unchanged backup
	change1pct "$src"
	phase changed1% backup
	phase restore restore --target "$work/cf-restore-$ds"
	diff -r "$src" "$work/cf-restore-$ds" >/dev/null || { echo "crayfish restore of $ds differs!" >&2; exit 1; }
	phase drill drill
	kill "$pid"; wait "$pid" || true
}

bench_restic() {
	command -v restic >/dev/null || { echo "restic not installed: skipped (apt-get install restic)"; return; }
	local ds=$1 src=$work/data-$1 repo=$work/restic-$1
	local bytes files
	bytes=$(du -sb "$src" | cut -f1)
	files=$(nfiles "$src")
	export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
	restic init --repo "$repo" >/dev/null
	timed restic --repo "$repo" backup "$src"
	row restic "$ds" backup "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	timed restic --repo "$repo" backup "$src"
	row restic "$ds" unchanged "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	change1pct "$src"
	timed restic --repo "$repo" backup "$src"
	row restic "$ds" changed1% "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	timed restic --repo "$repo" restore latest --target "$work/restic-restore-$ds"
	row restic "$ds" restore "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	timed restic --repo "$repo" check --read-data
	row restic "$ds" check-data "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
}

bench_borg() {
	command -v borg >/dev/null || { echo "borg not installed: skipped (apt-get install borgbackup)"; return; }
	local ds=$1 src=$work/data-$1 repo=$work/borg-$1
	local bytes files
	bytes=$(du -sb "$src" | cut -f1)
	files=$(nfiles "$src")
	export BORG_PASSPHRASE=bench BORG_BASE_DIR=$work/borg-base BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
	borg init --encryption none "$repo" >/dev/null 2>&1
	timed borg create --compression zstd,1 "$repo::a1" "$src"
	row borg "$ds" backup "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	timed borg create --compression zstd,1 "$repo::a2" "$src"
	row borg "$ds" unchanged "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	change1pct "$src"
	timed borg create --compression zstd,1 "$repo::a3" "$src"
	row borg "$ds" changed1% "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	mkdir -p "$work/borg-restore-$ds"
	pushd "$work/borg-restore-$ds" >/dev/null
	timed borg extract "$repo::a3"
	popd >/dev/null
	row borg "$ds" restore "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
	timed borg check --verify-data "$repo"
	row borg "$ds" check-data "$secs" "$bytes" "$files" "$rss" "$(mib_of "$repo")"
}

for ds in $DATASETS; do
	for tool in $TOOLS; do
		"bench_$tool" "$ds"
	done
done
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; go $(go env GOVERSION); $(restic version 2>/dev/null | head -1); $(borg --version 2>/dev/null)"
