#!/usr/bin/env bash
# Prints statement coverage per package and in total from the counters a
# COVERAGE=1 run of scripts/test.sh leaves (docs/coverage.md):
#
#   scripts/coverage.sh [DIR]    DIR (default $CRAYFISH_COVERAGE_DIR or
#                                /tmp/crayfish-coverage) holds unit/ (the
#                                test binaries' -test.gocoverdir) and
#                                agents/ (the crayfish processes the
#                                multi-process tests ran, CRAYFISH_COVERDIR)
#
# Two columns: the unit tests alone, and unit tests plus agents. It also
# writes DIR/unit.out and DIR/all.out (text profiles for
# `go tool cover -func=... / -html=...`) and DIR/func.txt (per function,
# unit plus agents).
#
# The total counts crayfish's own code only. Not counted (listed apart):
# the bench tools (bench/), the test harnesses (test/), the packages that
# exist for tests (internal/testbin, internal/testcert,
# storage/internal/storagetest, storage/backend/emulators,
# node/plugin/plugintest), the spec generator node/api/specgen (not
# linked into the agent), and generated protobuf code (*.pb.go).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-${CRAYFISH_COVERAGE_DIR:-/tmp/crayfish-coverage}}
module=$(go list -m)
inputs=()
for d in unit agents; do
	# covdata fails on a directory without a meta-data file.
	if compgen -G "$dir/$d/covmeta.*" >/dev/null; then
		inputs+=("$dir/$d")
	fi
done
if [ ${#inputs[@]} -eq 0 ]; then
	echo "coverage.sh: no coverage data under $dir (run COVERAGE=1 scripts/test.sh)" >&2
	exit 1
fi

# A profile with each block once: the same block comes once per program
# that linked it (every test binary, the agent builds with their tags);
# its counts add up.
profile() { # out inputs...
	local out=$1
	shift
	if [ $# -eq 0 ]; then
		echo "mode: atomic" >"$out"
		return
	fi
	local IFS=,
	go tool covdata textfmt -i="$*" -o "$out.raw"
	{
		head -n 1 "$out.raw"
		awk 'NR > 1 { n[$1] = $2; c[$1] += $3 }
			END { for (b in n) print b, n[b], c[b] }' "$out.raw" | LC_ALL=C sort -k1,1
	} >"$out"
	rm -f "$out.raw"
}
unit=()
[ -d "$dir/unit" ] && compgen -G "$dir/unit/covmeta.*" >/dev/null && unit=("$dir/unit")
profile "$dir/unit.out" "${unit[@]}"
profile "$dir/all.out" "${inputs[@]}"
go tool cover -func="$dir/all.out" >"$dir/func.txt" 2>/dev/null || true

# One line per package: statements, unit %, unit+agents %; the counted
# packages first, then the total, then what is not counted.
awk -v module="$module/" '
	function excluded(p, file) {
		return p ~ /^bench\// || p == "test" || p ~ /^test\// ||
			p ~ /^(internal\/testbin|internal\/testcert|storage\/internal\/storagetest|storage\/backend\/emulators|node\/plugin\/plugintest|node\/api\/specgen)$/ ||
			file ~ /\.pb\.go$/
	}
	FNR == 1 { which++; next }
	{
		f = $1
		sub(/:.*/, "", f)
		sub(module, "", f)
		p = f
		sub(/\/[^\/]*$/, "", p)
		key = p (f ~ /\.pb\.go$/ ? "/*.pb.go" : "")
		if (excluded(p, f)) key = "~" key
		if (which == 2) {
			stmts[key] += $2
			if ($3 > 0) all[key] += $2
		} else if ($3 > 0) {
			unit[key] += $2
		}
	}
	END {
		for (k in stmts) print k, stmts[k], unit[k] + 0, all[k] + 0
	}' "$dir/unit.out" "$dir/all.out" | LC_ALL=C sort | awk '
	function pct(a, b) { return b ? sprintf("%.1f%%", 100 * a / b) : "-" }
	function row(name, s, u, a) { printf "%-36s %7d %8s %12s\n", name, s, pct(u, s), pct(a, s) }
	BEGIN { printf "%-36s %7s %8s %12s\n", "package", "stmts", "unit", "unit+agents" }
	$1 !~ /^~/ { row($1, $2, $3, $4); n += $2; u += $3; a += $4; next }
	{ rest[++r] = $0 }
	END {
		row("total", n, u, a)
		print ""
		print "not counted (bench tools, test harnesses and helpers, generators, generated code):"
		for (i = 1; i <= r; i++) {
			split(rest[i], f, " ")
			row(substr(f[1], 2), f[2], f[3], f[4])
		}
		print ""
		printf "coverage total: %s of crayfish statements (unit tests alone: %s)\n", pct(a, n), pct(u, n)
	}'
echo "profiles: $dir/unit.out, $dir/all.out; per function: $dir/func.txt"
