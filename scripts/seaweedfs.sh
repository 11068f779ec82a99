#!/usr/bin/env bash
# Runs a real S3 server on this machine: SeaweedFS's `weed mini` (master,
# volume server, filer and S3 gateway in one process), built from its Go
# module in a separate wrapper module (test/seaweedfs/wrapper) and cached.
#
#   scripts/seaweedfs.sh install            build weed once (idempotent; ~6 minutes cold on 2 cores)
#   scripts/seaweedfs.sh check              exit 1 unless weed is installed (installs nothing)
#   scripts/seaweedfs.sh path               install if needed, print the weed binary's path (for tests)
#   scripts/seaweedfs.sh start NAME IP      start a server on IP (S3 on IP:8333), wait until it answers
#   scripts/seaweedfs.sh stop NAME          SIGTERM, wait, SIGKILL
#   scripts/seaweedfs.sh url NAME BUCKET [PREFIX]
#                                           print crayfish's s3:// repository URL for the server
#   scripts/seaweedfs.sh du NAME BUCKET     print the bytes stored in a bucket (logical size)
#   scripts/seaweedfs.sh env NAME           print the server's addresses and paths (shell vars)
#   scripts/seaweedfs.sh logs NAME [LINES]  tail the server's log
#
# IP must be a loopback address (127.x.y.z); the server binds its TCP ports
# there and its unix sockets in its own directory. Run one server at a
# time: two weed minis on distinct addresses still find each other's volume
# servers and answer 500 (weed 4.53; the tests serialize theirs with a lock). Buckets are
# created on first use by `weed mini -bucket` (crayfish init creates none).
#
# Environment (all optional):
#   CRAYFISH_SEAWEEDFS_CACHE  $HOME/.cache/crayfish/seaweedfs (binary: <cache>/<version>/weed)
#   CRAYFISH_SEAWEEDFS_DIR    /tmp/crayfish-seaweedfs         (one directory per server)
#   SEAWEEDFS_BUCKETS         crayfish: comma-separated buckets created at start
#   SEAWEEDFS_ACCESS_KEY / SEAWEEDFS_SECRET_KEY   crayfish / crayfish-secret
set -euo pipefail

VERSION=v0.0.0-20261109003541-7506e5f91cd6
CACHE=${CRAYFISH_SEAWEEDFS_CACHE:-${HOME:-/root}/.cache/crayfish/seaweedfs}
BIN=$CACHE/$VERSION/weed
DIR=${CRAYFISH_SEAWEEDFS_DIR:-/tmp/crayfish-seaweedfs}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRAPPER=$REPO_ROOT/test/seaweedfs/wrapper
ACCESS_KEY=${SEAWEEDFS_ACCESS_KEY:-crayfish}
SECRET_KEY=${SEAWEEDFS_SECRET_KEY:-crayfish-secret}
BUCKETS=${SEAWEEDFS_BUCKETS:-crayfish}
START_TIMEOUT=${SEAWEEDFS_START_TIMEOUT:-60}
S3_PORT=8333

die() { echo "seaweedfs.sh: $*" >&2; exit 1; }
log() { echo "seaweedfs.sh: $*" >&2; }

cmd_install() {
	[[ -x $BIN && -f $BIN.complete ]] && return 0
	command -v go >/dev/null || die "go not found"
	[[ -f $WRAPPER/go.mod ]] || die "missing $WRAPPER/go.mod"
	mkdir -p "$CACHE/$VERSION"
	exec 9>"$CACHE/$VERSION/.lock"
	flock 9
	if [[ -x $BIN && -f $BIN.complete ]]; then
		exec 9>&-
		return 0
	fi
	local t0=$SECONDS tmp=$BIN.tmp.$$
	log "building weed $VERSION from $WRAPPER (about 6 minutes cold on 2 cores)"
	# GOWORK=off: never let a go.work above pull the wrapper into crayfish.
	if ! (cd "$WRAPPER" && GOWORK=off GOFLAGS=-mod=mod \
		go build -trimpath -o "$tmp" github.com/seaweedfs/seaweedfs/weed) >"$tmp.log" 2>&1; then
		tail -40 "$tmp.log" >&2
		rm -f "$tmp" "$tmp.log"
		die "building weed failed (log above)"
	fi
	rm -f "$tmp.log"
	mv "$tmp" "$BIN"
	date -u +%FT%TZ >"$BIN.complete"
	exec 9>&-
	log "built $BIN ($(du -h "$BIN" | cut -f1)) in $((SECONDS - t0))s"
}

cmd_check() {
	[[ -x $BIN && -f $BIN.complete ]] || die "weed is not installed: scripts/seaweedfs.sh install"
}

node_dir() { # NAME
	[[ $1 =~ ^[A-Za-z0-9_-]+$ ]] || die "bad server name '$1'"
	echo "$DIR/$1"
}

pid_of() { # NAME: the running server's pid, or fail
	local d
	d=$(node_dir "$1")
	[[ -f $d/pid ]] || return 1
	local pid
	pid=$(cat "$d/pid")
	kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

cmd_start() { # NAME IP
	[[ $# -eq 2 ]] || die "usage: start NAME IP"
	local name=$1 ip=$2 d
	[[ $ip =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "IP must be a loopback address, not '$ip'"
	cmd_check
	d=$(node_dir "$name")
	if pid_of "$name" >/dev/null; then
		die "server $name is already running (pid $(pid_of "$name"))"
	fi
	mkdir -p "$d/data"
	echo "$ip" >"$d/ip"
	# The S3 gateway reads its one identity from the AWS variables.
	AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
		setsid "$BIN" mini -dir="$d/data" -ip="$ip" -ip.bind="$ip" \
		-bucket="$BUCKETS" -admin.ui=false \
		-filer.localSocket="$d/filer.sock" -s3.localSocket="$d/s3.sock" \
		-admin.port.legacy=0 -admin.worker.ip="$ip" \
		>"$d/log" 2>&1 </dev/null &
	echo $! >"$d/pid"
	local deadline=$((SECONDS + START_TIMEOUT))
	# Ready when every bucket answers a signed HEAD with 200 (the gateway
	# creates them after it starts listening).
	local b
	for b in ${BUCKETS//,/ }; do
		until [[ $(curl -s -I -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
			--user "$ACCESS_KEY:$SECRET_KEY" "http://$ip:$S3_PORT/$b" || true) == 200 ]]; do
			if ! pid_of "$name" >/dev/null; then
				tail -30 "$d/log" >&2
				die "server $name exited while starting (log above)"
			fi
			((SECONDS < deadline)) || { tail -30 "$d/log" >&2; die "bucket $b on $ip:$S3_PORT not ready within ${START_TIMEOUT}s"; }
			sleep 0.5
		done
	done
	log "server $name up: s3 http://$ip:$S3_PORT (pid $(cat "$d/pid"))"
}

cmd_stop() { # NAME
	[[ $# -eq 1 ]] || die "usage: stop NAME"
	local pid
	pid=$(pid_of "$1") || return 0
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.25
	done
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

cmd_url() { # NAME BUCKET [PREFIX]
	[[ $# -ge 2 ]] || die "usage: url NAME BUCKET [PREFIX]"
	local d ip
	d=$(node_dir "$1")
	ip=$(cat "$d/ip" 2>/dev/null) || die "server $1 was never started"
	echo "s3://$2/${3:-}?endpoint=http://$ip:$S3_PORT&use_path_style=true&region=us-east-1&disable_https=true"
}

cmd_env() { # NAME
	local d ip
	d=$(node_dir "$1")
	ip=$(cat "$d/ip" 2>/dev/null) || die "server $1 was never started"
	cat <<-EOF
		SEAWEEDFS_IP=$ip
		SEAWEEDFS_S3_PORT=$S3_PORT
		SEAWEEDFS_ENDPOINT=http://$ip:$S3_PORT
		SEAWEEDFS_DIR=$d
		SEAWEEDFS_LOG=$d/log
		AWS_ACCESS_KEY_ID=$ACCESS_KEY
		AWS_SECRET_ACCESS_KEY=$SECRET_KEY
	EOF
}

cmd_du() { # NAME BUCKET
	[[ $# -eq 2 ]] || die "usage: du NAME BUCKET"
	local d ip out
	d=$(node_dir "$1")
	ip=$(cat "$d/ip" 2>/dev/null) || die "server $1 was never started"
	out=$(echo "fs.du /buckets/$2" | timeout 60 "$BIN" shell -master="$ip:9333" 2>&1) || die "weed shell: $out"
	# "block: N	logical size: N	/buckets/B" (the space after the colon
	# comes and goes with the number's width).
	sed -n 's/.*logical size: *\([0-9][0-9]*\).*/\1/p' <<<"$out" | grep . ||
		die "no size in weed shell's answer: $out"
}

cmd_logs() { # NAME [LINES]
	tail -n "${2:-50}" "$(node_dir "$1")/log"
}

main() {
	[[ $# -ge 1 ]] || die "usage: $0 install|check|path|start|stop|url|du|env|logs ..."
	local cmd=$1
	shift
	case $cmd in
	install) cmd_install ;;
	check) cmd_check ;;
	path) cmd_install && echo "$BIN" ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	url) cmd_url "$@" ;;
	env) cmd_env "$@" ;;
	du) cmd_du "$@" ;;
	logs) cmd_logs "$@" ;;
	-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
	*) die "unknown command '$cmd'" ;;
	esac
}

main "$@"
