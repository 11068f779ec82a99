#!/usr/bin/env bash
# Runs the fuzzing campaign: every fuzz target of the module, one at a
# time, for FUZZTIME each, and prints per target the time it ran, the
# executions, the new interesting inputs and the result.
#
#   ./scripts/fuzz.sh                                   # every target, 10 minutes each
#   FUZZTIME=30s ./scripts/fuzz.sh                      # a quick run
#   TARGETS='FuzzReadFooter|FuzzDecodeSegment' ./scripts/fuzz.sh
#
# Environment:
#   FUZZTIME       per target, as go test -fuzztime takes it (default 10m)
#   FUZZ_PARALLEL  fuzzing workers per target, go test -parallel (default 1:
#                  one core; targets always run one after the other)
#   TARGETS        an extended regexp; only targets whose name, or
#                  package-dir/name (storage/pack/FuzzReadFooter), matches
#                  run (default: all)
#   FUZZ_MINIMIZETIME  go test -fuzzminimizetime (default 10s, go's is 60s):
#                  the longest the worker spends shrinking one new input,
#                  during which it runs nothing new; slow targets on a
#                  loaded machine otherwise spend most of their time there
#   FUZZ_LOGDIR    where each target's full go test output is kept
#                  (default: a new temporary directory, printed)
#
# Targets are discovered with go test -list '^Fuzz' in the packages whose
# _test.go files declare a func Fuzz... (not ./...: listing every package
# would build the integration tests' binaries). A target that fails
# (a crash, a failed property, a build error) makes the script exit 1 after
# the others ran; the input that failed is left where go test writes it,
# <package>/testdata/fuzz/<target>/<hash>, to be fixed and checked in as a
# regression seed. New interesting inputs stay in the fuzz cache
# ($(go env GOCACHE)/fuzz): they are not failures.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10m}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZ_MINIMIZETIME=${FUZZ_MINIMIZETIME:-10s}
TARGETS=${TARGETS:-}
LOGDIR=${FUZZ_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/crayfish-fuzz.XXXXXX")}
mkdir -p "$LOGDIR"

# Discover: package dirs with a fuzz function, then its targets by go test -list.
mapfile -t dirs < <(grep -rl --include='*_test.go' -E '^func Fuzz[A-Z0-9_a-z]*\(' . |
	xargs -r -n1 dirname | sed 's|^\./||' | sort -u)
targets=()
for d in "${dirs[@]}"; do
	if ! out=$(go test -list '^Fuzz' "./$d" 2>&1); then
		echo "fuzz: go test -list in ./$d failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	while read -r name; do
		[[ $name =~ ^Fuzz ]] || continue
		if [[ -n $TARGETS ]] && ! grep -Eq -- "$TARGETS" <<<"$name" && ! grep -Eq -- "$TARGETS" <<<"$d/$name"; then
			continue
		fi
		targets+=("$d $name")
	done <<<"$out"
done
if ((${#targets[@]} == 0)); then
	echo "fuzz: no fuzz target matches TARGETS='$TARGETS'" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, $FUZZTIME each, -parallel $FUZZ_PARALLEL, logs in $LOGDIR"
echo "fuzz: commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(go version | cut -d' ' -f3-), started $(date -u +%Y-%m-%dT%H:%M:%SZ)"

summary=()
failed=0
for t in "${targets[@]}"; do
	d=${t% *}
	name=${t#* }
	log="$LOGDIR/${d//\//_}.$name.log"
	echo "fuzz: $d $name ..."
	start=$(date +%s)
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" \
		-fuzzminimizetime "$FUZZ_MINIMIZETIME" -timeout 0 "./$d" >"$log" 2>&1
	rc=$?
	wall=$(($(date +%s) - start))
	# go test prints "fuzz: elapsed: 3s, execs: 1234 (411/sec), new
	# interesting: 2 (total: 8)" every 3 s; the last one is the total.
	stat=$(grep -E '^fuzz: elapsed: .*, execs: ' "$log" | tail -n 1)
	elapsed=$(sed -nE 's/^fuzz: elapsed: ([^,]+),.*/\1/p' <<<"$stat")
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$stat")
	newin=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$stat")
	corpus=$(sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p' <<<"$stat")
	if ((rc == 0)); then
		result=ok
	else
		result=FAIL
		failed=1
	fi
	line=$(printf '%-30s %-26s %6ss %8s %12s %6s %7s  %s' "$d" "$name" "$wall" "${elapsed:--}" "${execs:--}" "${newin:--}" "${corpus:--}" "$result")
	echo "$line"
	summary+=("$line")
	if ((rc != 0)); then
		grep -E 'Failing input written to|--- FAIL|panic:|Error|error' "$log" | head -n 20 | sed 's/^/    /'
		written=$(sed -nE 's/.*Failing input written to (.*)$/\1/p' "$log" | head -n 1)
		[[ -n $written ]] && echo "    failing input: $d/$written (check it in as a regression seed once fixed)"
		echo "    full output: $log"
	fi
done

echo
echo "fuzz: summary ($FUZZTIME per target, -parallel $FUZZ_PARALLEL, finished $(date -u +%Y-%m-%dT%H:%M:%SZ))"
printf '%-30s %-26s %7s %8s %12s %6s %7s  %s\n' package target wall elapsed execs new corpus result
printf '%s\n' "${summary[@]}"
exit "$failed"
