# shellcheck shell=bash
# Shared helpers of the bench/ scripts (sourced; they set $work and keep
# the agent's log in $work/agent.log).

# timeit runs a command and prints its wall time in seconds; on failure
# it shows the command's output and the agent log's tail and exits.
# shellcheck disable=SC2154 # $work is the sourcing script's
timeit() {
	local t0
	t0=$(date +%s.%N)
	"$@" >"$work/last.out" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/last.out" >&2; tail -30 "$work/agent.log" >&2; exit 1; }
	echo "$(date +%s.%N) - $t0" | bc -l
}
