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

# now is the time in seconds with nanoseconds; since T the seconds after T.
now() { date +%s.%N; }
since() { printf '%.3f' "$(echo "$(now) - $1" | bc -l)"; }
# hwm_mib PID / rss_mib PID: a process's peak and current RSS in MiB.
hwm_mib() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mib() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
# human BYTES: 1.5MiB and the like.
human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
