#!/usr/bin/env bash
# Runs a real M3DB cluster on this machine: m3dbnode v1.5.0 built from its Go
# module in a separate wrapper module (test/m3db/wrapper), and a real etcd
# (Debian's etcd-server binary) shared by the nodes. See test/m3db/README.md.
#
#   scripts/m3db.sh install                      build/fetch m3dbnode, filesetgen and etcd once (idempotent)
#   scripts/m3db.sh check                        exit 1 unless all are installed (installs nothing)
#   scripts/m3db.sh etcd-start NAME IP           start a one-member etcd on IP:2379, wait for /health
#   scripts/m3db.sh start NAME IP [--coordinator] start an m3dbnode (host id NAME), wait until it listens
#   scripts/m3db.sh init-cluster [NS[:RET[:BLOCK]]...]
#                                                placement (RF 3) + namespaces for the running nodes,
#                                                through a node's embedded coordinator; waits until
#                                                every node is bootstrapped and every shard AVAILABLE
#   scripts/m3db.sh wait NAME [TIMEOUT]          wait until the node reports bootstrapped
#   scripts/m3db.sh stop NAME                    SIGTERM, wait, SIGKILL (etcd or m3dbnode)
#   scripts/m3db.sh status                       every node and etcd member under the nodes dir
#   scripts/m3db.sh clean NAME|--all             delete a stopped node's directory
#   scripts/m3db.sh wipe NAME                    delete a stopped m3dbnode's data and kv cache (keeps its settings)
#   scripts/m3db.sh etcd-wipe NAME               restart an etcd member empty (stop, delete its data, start)
#   scripts/m3db.sh logs NAME [LINES]            tail the node's log
#   scripts/m3db.sh env NAME                     print the node's addresses and paths (shell vars)
#   scripts/m3db.sh etcdctl ARGS...              etcdctl (API v3) against the running etcd
#
# IP must be a loopback address (127.x.y.z; all of 127/8 answers on lo), one
# per node, so every m3dbnode uses M3's standard ports on its own IP:
# tchannel 9000, cluster tchannel 9001, node HTTP 9002, cluster HTTP 9003,
# debug 9004 (M3DB_PORT_BASE moves them: BASE..BASE+4), and with
# --coordinator the coordinator API on 7201 (its metrics on 7203). etcd
# members use 2379 (client) and 2380 (peer).
#
# Environment (all optional):
#   M3DB_VERSION            v1.5.0 (the only version the Go module proxy serves)
#   CRAYFISH_M3DB_CACHE     $HOME/.cache/crayfish/m3db   (binaries: <cache>/<version>/{m3dbnode,filesetgen})
#   CRAYFISH_ETCD_CACHE     $HOME/.cache/crayfish/etcd   (binaries: <cache>/<version>/{etcd,etcdctl})
#   CRAYFISH_M3DB_NODES     /tmp/crayfish-m3db           (one directory per node or etcd member)
#   M3DB_ENV / M3DB_ZONE    default_env / embedded       (M3's defaults; the service is always m3db)
#   M3DB_ETCD_ENDPOINTS     host:port,... (default: every running etcd member under the nodes dir)
#   M3DB_ISOLATION_GROUP    isolation group of a started node (default: its NAME)
#   M3DB_PORT_BASE          9000: a started node's first port (tchannel; BASE+1..BASE+4 the others)
#   M3DB_READ_CONSISTENCY   unstrict_majority: a started node's client read consistency
#   M3DB_NUM_SHARDS         16 (init-cluster)        M3DB_REPLICATION_FACTOR  min(3, nodes)
#   M3DB_INIT_NODES         name,name,... (init-cluster; default: every running m3dbnode)
#   M3DB_START_TIMEOUT      60 (s)   M3DB_STOP_TIMEOUT 30 (s)   M3DB_INIT_TIMEOUT 240 (s)
#   M3DB_CONFIG_EXTRA       a YAML file (top-level db:/coordinator:) that m3dbnode merges over
#                           the generated config.yml (a second -f; its keys win)
set -euo pipefail

M3DB_VERSION=${M3DB_VERSION:-v1.5.0}
M3_CACHE=${CRAYFISH_M3DB_CACHE:-${HOME:-/root}/.cache/crayfish/m3db}
M3_BIN=$M3_CACHE/$M3DB_VERSION/m3dbnode
# filesetgen (test/m3db/wrapper/filesetgen): writes real filesets with M3's
# own writer for the m3db/fileset tests. Its stamp holds a hash of its
# sources and the wrapper's go.mod/go.sum, so an edit rebuilds it.
FILESETGEN_BIN=$M3_CACHE/$M3DB_VERSION/filesetgen
ETCD_CACHE=${CRAYFISH_ETCD_CACHE:-${HOME:-/root}/.cache/crayfish/etcd}
NODES=${CRAYFISH_M3DB_NODES:-/tmp/crayfish-m3db}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRAPPER=$REPO_ROOT/test/m3db/wrapper
M3DB_ENV=${M3DB_ENV:-default_env}
M3DB_ZONE=${M3DB_ZONE:-embedded}
START_TIMEOUT=${M3DB_START_TIMEOUT:-60}
STOP_TIMEOUT=${M3DB_STOP_TIMEOUT:-30}
INIT_TIMEOUT=${M3DB_INIT_TIMEOUT:-240}
# M3 v1.5.0's own hash of its module zip (the checksum database is not
# reachable here; GONOSUMDB below skips it for this module only).
M3_SUM='h1:WdnqFY9tJV2U088sl0rtrDzhOpOZYhKZhOCMKUrIj+4='

die() { echo "m3db.sh: $*" >&2; exit 1; }
log() { echo "m3db.sh: $*" >&2; }

need() { # cmd [debian package]
	command -v "$1" >/dev/null || die "$1 not found (apt-get install ${2:-$1})"
}

# --- install ---------------------------------------------------------------

etcd_dir() { # the installed etcd's directory, or fail
	[[ -x $ETCD_CACHE/current/etcd ]] || return 1
	echo "$ETCD_CACHE/current"
}

install_m3dbnode() {
	if [[ -x $M3_BIN && -f $M3_BIN.complete ]]; then
		return 0
	fi
	need go golang-go
	[[ -f $WRAPPER/go.mod ]] || die "missing $WRAPPER/go.mod"
	grep -q "^github.com/m3db/m3 $M3DB_VERSION $M3_SUM\$" "$WRAPPER/go.sum" ||
		die "$WRAPPER/go.sum lacks the pinned hash of github.com/m3db/m3 $M3DB_VERSION"
	mkdir -p "$M3_CACHE/$M3DB_VERSION"
	exec 9>"$M3_CACHE/$M3DB_VERSION/.lock"
	flock 9
	if [[ -x $M3_BIN && -f $M3_BIN.complete ]]; then
		exec 9>&-
		return 0
	fi
	local t0=$SECONDS tmp=$M3_BIN.tmp.$$
	log "building m3dbnode $M3DB_VERSION from $WRAPPER (about 4 minutes cold on 2 cores)"
	# -mod=mod: M3's graph is resolved from the wrapper's go.mod (M3's pins
	# and replace directives); go.sum in the repo makes it reproducible.
	# -checklinkname=0: M3's 2022 golang.org/x/net links into syscall.
	# GOWORK=off: never let a go.work above pull the wrapper into crayfish.
	if ! (cd "$WRAPPER" && GOWORK=off GOFLAGS=-mod=mod GONOSUMDB=github.com/m3db/m3 \
		go build -trimpath -ldflags=-checklinkname=0 -o "$tmp" \
		github.com/m3db/m3/src/cmd/services/m3dbnode/main) >"$tmp.log" 2>&1; then
		tail -40 "$tmp.log" >&2
		rm -f "$tmp" "$tmp.log"
		die "building m3dbnode failed (log above)"
	fi
	rm -f "$tmp.log"
	mv "$tmp" "$M3_BIN"
	date -u +%FT%TZ >"$M3_BIN.complete"
	exec 9>&-
	log "built $M3_BIN ($(du -h "$M3_BIN" | cut -f1)) in $((SECONDS - t0))s"
}

# filesetgen_hash: sha256 of filesetgen's sources (byte order of their
# names) then the wrapper's go.mod and go.sum, concatenated. The m3db/fileset
# test computes the same hash to refuse a stale binary.
filesetgen_hash() {
	local f files=()
	while IFS= read -r f; do files+=("$f"); done < <(cd "$WRAPPER" && LC_ALL=C ls filesetgen/*.go)
	(cd "$WRAPPER" && cat "${files[@]}" go.mod go.sum) | sha256sum | cut -d' ' -f1
}

filesetgen_current() {
	[[ -x $FILESETGEN_BIN && -f $FILESETGEN_BIN.complete ]] &&
		[[ $(<"$FILESETGEN_BIN.complete") == "$(filesetgen_hash)" ]]
}

# install_filesetgen: built like m3dbnode (same module, flags and graph), so
# a warm Go build cache makes it a matter of seconds.
install_filesetgen() {
	if filesetgen_current; then
		return 0
	fi
	need go golang-go
	mkdir -p "$M3_CACHE/$M3DB_VERSION"
	exec 9>"$M3_CACHE/$M3DB_VERSION/.lock"
	flock 9
	if filesetgen_current; then
		exec 9>&-
		return 0
	fi
	local t0=$SECONDS tmp=$FILESETGEN_BIN.tmp.$$
	log "building filesetgen from $WRAPPER/filesetgen"
	if ! (cd "$WRAPPER" && GOWORK=off GOFLAGS=-mod=mod GONOSUMDB=github.com/m3db/m3 \
		go build -trimpath -ldflags=-checklinkname=0 -o "$tmp" ./filesetgen) >"$tmp.log" 2>&1; then
		tail -40 "$tmp.log" >&2
		rm -f "$tmp" "$tmp.log"
		die "building filesetgen failed (log above)"
	fi
	rm -f "$tmp.log"
	mv "$tmp" "$FILESETGEN_BIN"
	# Hashed after the build: -mod=mod may have tidied go.mod.
	filesetgen_hash >"$FILESETGEN_BIN.complete"
	exec 9>&-
	log "built $FILESETGEN_BIN ($(du -h "$FILESETGEN_BIN" | cut -f1)) in $((SECONDS - t0))s"
}

# etcd: Debian's etcd-server/etcd-client packages, unpacked into the cache
# (apt-get download + dpkg-deb -x: no service is installed or started).
install_etcd() {
	if etcd_dir >/dev/null; then
		return 0
	fi
	need apt-get apt
	need dpkg-deb dpkg
	mkdir -p "$ETCD_CACHE"
	exec 8>"$ETCD_CACHE/.lock"
	flock 8
	if etcd_dir >/dev/null; then
		exec 8>&-
		return 0
	fi
	local t0=$SECONDS tmp=$ETCD_CACHE/tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/root"
	chmod 777 "$tmp" # apt-get download runs as _apt when it can
	if ! (cd "$tmp" && apt-get download etcd-server etcd-client) >"$tmp/apt.log" 2>&1; then
		log "apt-get download failed; running apt-get update once and retrying"
		apt-get update -qq >>"$tmp/apt.log" 2>&1 || true
		if ! (cd "$tmp" && apt-get download etcd-server etcd-client) >>"$tmp/apt.log" 2>&1; then
			tail -20 "$tmp/apt.log" >&2
			rm -rf "$tmp"
			die "could not download Debian's etcd-server/etcd-client packages (log above)"
		fi
	fi
	local deb
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$tmp/root"
	done
	[[ -x $tmp/root/usr/bin/etcd && -x $tmp/root/usr/bin/etcdctl ]] || die "the etcd packages hold no usr/bin/etcd and etcdctl"
	local ver
	ver=$("$tmp/root/usr/bin/etcd" --version | awk '/^etcd Version:/ {print $3}')
	[[ -n $ver ]] || die "cannot read the version of the downloaded etcd"
	rm -rf "${ETCD_CACHE:?}/$ver"
	mkdir -p "$ETCD_CACHE/$ver"
	mv "$tmp/root/usr/bin/etcd" "$tmp/root/usr/bin/etcdctl" "$ETCD_CACHE/$ver/"
	ls "$tmp"/*.deb | xargs -n1 basename >"$ETCD_CACHE/$ver/packages"
	rm -rf "$tmp"
	ln -sfn "$ver" "$ETCD_CACHE/current"
	exec 8>&-
	log "installed etcd $ver (Debian) into $ETCD_CACHE/$ver in $((SECONDS - t0))s"
}

cmd_install() {
	install_etcd
	install_m3dbnode
	install_filesetgen
}

# check: is everything installed? (builds and downloads nothing; tests call it
# so that a missing binary fails loudly instead of starting a 4-minute build)
cmd_check() {
	local ok=1 d
	if [[ -x $M3_BIN && -f $M3_BIN.complete ]]; then
		echo "m3dbnode $M3DB_VERSION: $M3_BIN"
	else
		echo "m3dbnode $M3DB_VERSION: MISSING ($M3_BIN; run scripts/m3db.sh install)"
		ok=0
	fi
	if filesetgen_current; then
		echo "filesetgen $M3DB_VERSION: $FILESETGEN_BIN"
	elif [[ -x $FILESETGEN_BIN ]]; then
		echo "filesetgen $M3DB_VERSION: STALE ($FILESETGEN_BIN predates its sources; run scripts/m3db.sh install)"
		ok=0
	else
		echo "filesetgen $M3DB_VERSION: MISSING ($FILESETGEN_BIN; run scripts/m3db.sh install)"
		ok=0
	fi
	if d=$(etcd_dir); then
		echo "etcd $(readlink "$ETCD_CACHE/current"): $d/etcd"
	else
		echo "etcd: MISSING ($ETCD_CACHE/current/etcd; run scripts/m3db.sh install)"
		ok=0
	fi
	for d in curl jq; do
		command -v "$d" >/dev/null || { echo "$d: MISSING (apt-get install $d)"; ok=0; }
	done
	[[ $ok == 1 ]]
}

# --- helpers ---------------------------------------------------------------

node_dir() {
	[[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad node name '$1'"
	echo "$NODES/$1"
}

check_ip() {
	[[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "IP must be a 127.x.y.z loopback address, got '$1'"
}

# node_pid DIR: prints the pid if that node's process is alive, else fails.
node_pid() {
	local dir=$1 pid
	[[ -f $dir/pid ]] || return 1
	pid=$(<"$dir/pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against pid reuse: the command line must name this directory.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" || return 1
	echo "$pid"
}

port_open() { # host port
	timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

rss_mib() {
	awk '/^VmRSS:/ {printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

kind_of() { cat "$1/kind" 2>/dev/null || echo "?"; }

# Every running etcd member's client endpoint, comma-separated.
running_etcd_endpoints() {
	local d list=""
	[[ -d $NODES ]] || return 0
	for d in "$NODES"/*/; do
		d=${d%/}
		[[ $(kind_of "$d") == etcd ]] || continue
		node_pid "$d" >/dev/null || continue
		list+=${list:+,}$(<"$d/ip"):2379
	done
	echo "$list"
}

# Running m3dbnodes, one directory a line, sorted by name.
running_m3_nodes() {
	local d
	[[ -d $NODES ]] || return 0
	for d in "$NODES"/*/; do
		d=${d%/}
		[[ $(kind_of "$d") == m3db ]] || continue
		node_pid "$d" >/dev/null || continue
		echo "$d"
	done
}

ip_in_use_by_other() { # dir ip
	local other
	[[ -d $NODES ]] || return 1
	for other in "$NODES"/*/; do
		other=${other%/}
		[[ -f $other/ip && $other != "$1" ]] || continue
		if [[ $(<"$other/ip") == "$2" ]] && node_pid "$other" >/dev/null; then
			basename "$other"
			return 0
		fi
	done
	return 1
}

fail_start() { # dir pid message
	local dir=$1 pid=$2
	echo "m3db.sh: $3" >&2
	echo "---- $dir/log (tail) ----" >&2
	tail -40 "$dir/log" >&2 2>/dev/null || echo "(no log)" >&2
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/pid"
	exit 1
}

# http_get URL: body on stdout; fails on a connection error or HTTP >= 400.
http_get() { curl -sS --fail-with-body --max-time 10 "$1"; }
http_post() { curl -sS --fail-with-body --max-time 60 -H 'Content-Type: application/json' \
	-H "Cluster-Environment-Name: $M3DB_ENV" -H "Cluster-Zone-Name: $M3DB_ZONE" -d "$2" "$1"; }

# --- etcd ------------------------------------------------------------------

cmd_etcd_start() {
	[[ $# -eq 2 ]] || die "usage: etcd-start NAME IP"
	local name=$1 ip=$2 dir pid other etcd
	check_ip "$ip"
	need curl
	dir=$(node_dir "$name")
	install_etcd
	etcd=$(etcd_dir)/etcd
	if pid=$(node_pid "$dir"); then
		die "$name already running (pid $pid)"
	fi
	[[ ! -f $dir/kind || $(kind_of "$dir") == etcd ]] || die "$dir is an m3dbnode's directory"
	if other=$(ip_in_use_by_other "$dir" "$ip"); then
		die "IP $ip is used by running node $other"
	fi
	port_open "$ip" 2379 && die "$ip:2379 is already in use"
	port_open "$ip" 2380 && die "$ip:2380 is already in use"
	mkdir -p "$dir/data"
	chmod 700 "$dir/data" # etcd warns about anything wider
	echo etcd >"$dir/kind"
	echo "$ip" >"$dir/ip"
	local t0=$SECONDS
	# One member; a restart reuses the data dir (initial-cluster is then ignored).
	setsid "$etcd" --name "$name" --data-dir "$dir/data" \
		--listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
		--listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
		--initial-cluster "$name=http://$ip:2380" --initial-cluster-state new \
		--initial-cluster-token "crayfish-$name" \
		--logger zap --log-outputs stderr \
		>"$dir/log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/pid"
	while :; do
		kill -0 "$pid" 2>/dev/null || fail_start "$dir" "" "etcd $name exited during startup"
		if curl -s --max-time 2 "http://$ip:2379/health" 2>/dev/null | grep -q '"health":"true"'; then
			break
		fi
		((SECONDS - t0 < START_TIMEOUT)) || fail_start "$dir" "$pid" "etcd $name not healthy after ${START_TIMEOUT}s"
		sleep 0.2
	done
	log "etcd $name: pid $pid, client http://$ip:2379, healthy after $((SECONDS - t0))s, dir $dir"
	echo "$pid"
}

cmd_etcdctl() {
	local dir eps
	dir=$(etcd_dir) || die "etcd not installed: run $0 install"
	eps=${M3DB_ETCD_ENDPOINTS:-$(running_etcd_endpoints)}
	[[ -n $eps ]] || die "no running etcd (start one with $0 etcd-start NAME IP, or set M3DB_ETCD_ENDPOINTS)"
	ETCDCTL_API=3 "$dir/etcdctl" --endpoints "$eps" "$@"
}

# --- m3dbnode --------------------------------------------------------------

# port_base prints a node's first port (tchannel), 9000 unless it was
# started with M3DB_PORT_BASE.
port_base() { # dir
	if [[ -f $1/port_base ]]; then cat "$1/port_base"; else echo 9000; fi
}

write_config() { # dir name ip endpoints coordinator(0|1)
	local dir=$1 name=$2 ip=$3 eps=$4 coord=$5 ep base
	base=$(port_base "$dir")
	{
		cat <<EOF
# Generated by scripts/m3db.sh for node $name; regenerated on every start.
EOF
		if [[ $coord == 1 ]]; then
			cat <<EOF
coordinator:
  listenAddress: $ip:7201
  logging:
    level: info
  metrics:
    scope:
      prefix: coordinator
    prometheus:
      handlerPath: /metrics
      listenAddress: $ip:7203
    sanitization: prometheus
    samplingRate: 1.0
    extended: none
  tagOptions:
    idScheme: quoted

EOF
		fi
		cat <<EOF
db:
  logging:
    level: info
  hostID:
    resolver: config
    value: $name
  listenAddress: $ip:$base
  clusterListenAddress: $ip:$((base + 1))
  httpNodeListenAddress: $ip:$((base + 2))
  httpClusterListenAddress: $ip:$((base + 3))
  debugListenAddress: $ip:$((base + 4))
  client:
    writeConsistencyLevel: majority
    readConsistencyLevel: ${M3DB_READ_CONSISTENCY:-unstrict_majority}
  gcPercentage: 100
  writeNewSeriesAsync: true
  writeNewSeriesBackoffDuration: 2ms
  cache:
    series:
      policy: lru
  commitlog:
    flushMaxBytes: 524288
    flushEvery: 1s
    queue:
      calculationType: fixed
      size: 65536
  filesystem:
    filePathPrefix: $dir/data
  discovery:
    config:
      service:
        env: $M3DB_ENV
        zone: $M3DB_ZONE
        service: m3db
        cacheDir: $dir/kvcache
        etcdClusters:
          - zone: $M3DB_ZONE
            endpoints:
EOF
		IFS=, read -ra _eps <<<"$eps"
		for ep in "${_eps[@]}"; do
			echo "              - $ep"
		done
	} >"$dir/config.yml"
	rm -f "$dir/config-extra.yml"
	if [[ -n ${M3DB_CONFIG_EXTRA:-} ]]; then
		[[ -s $M3DB_CONFIG_EXTRA ]] || die "M3DB_CONFIG_EXTRA=$M3DB_CONFIG_EXTRA is not a non-empty file"
		cp "$M3DB_CONFIG_EXTRA" "$dir/config-extra.yml"
	fi
}

cmd_start() {
	[[ $# -ge 2 && $# -le 3 ]] || die "usage: start NAME IP [--coordinator]"
	local name=$1 ip=$2 coord=0 dir pid other eps p base=${M3DB_PORT_BASE:-9000}
	if [[ $# -eq 3 ]]; then
		[[ $3 == --coordinator ]] || die "unknown option '$3'"
		coord=1
	fi
	check_ip "$ip"
	need curl
	dir=$(node_dir "$name")
	[[ -x $M3_BIN ]] || die "m3dbnode $M3DB_VERSION not installed at $M3_BIN: run $0 install"
	[[ $base =~ ^[0-9]+$ && $base -ge 1024 && $base -le 65530 ]] || die "M3DB_PORT_BASE=$base is not a port from 1024 to 65530"
	if pid=$(node_pid "$dir"); then
		# Starting a running node is fine when it runs as asked (a
		# restore's start command may be repeated).
		if [[ $(<"$dir/ip") == "$ip" && $(port_base "$dir") == "$base" ]]; then
			log "node $name already running (pid $pid) on $ip:$base"
			echo "$pid"
			return 0
		fi
		die "node $name already running (pid $pid) on $(<"$dir/ip"):$(port_base "$dir"), not $ip:$base"
	fi
	[[ ! -f $dir/kind || $(kind_of "$dir") == m3db ]] || die "$dir is an etcd member's directory"
	if other=$(ip_in_use_by_other "$dir" "$ip"); then
		die "IP $ip is used by running node $other"
	fi
	for p in $base $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)); do
		port_open "$ip" "$p" && die "$ip:$p is already in use"
	done
	if [[ $coord == 1 ]]; then
		port_open "$ip" 7201 && die "$ip:7201 is already in use"
		port_open "$ip" 7203 && die "$ip:7203 is already in use"
	fi
	eps=${M3DB_ETCD_ENDPOINTS:-$(running_etcd_endpoints)}
	[[ -n $eps ]] || die "no etcd: start one with $0 etcd-start NAME IP, or set M3DB_ETCD_ENDPOINTS"

	mkdir -p "$dir/data" "$dir/kvcache"
	echo m3db >"$dir/kind"
	echo "$ip" >"$dir/ip"
	echo "$base" >"$dir/port_base"
	echo "$eps" >"$dir/etcd_endpoints"
	echo "${M3DB_ISOLATION_GROUP:-$name}" >"$dir/isolation_group"
	if [[ $coord == 1 ]]; then echo 7201 >"$dir/coordinator_port"; else rm -f "$dir/coordinator_port"; fi
	write_config "$dir" "$name" "$ip" "$eps" "$coord"

	local t0=$SECONDS
	# setsid: the node gets its own session and outlives this script.
	local -a cfgs=(-f "$dir/config.yml")
	# m3dbnode merges -f files in order: the extra file overrides keys.
	[[ -f $dir/config-extra.yml ]] && cfgs+=(-f "$dir/config-extra.yml")
	setsid "$M3_BIN" "${cfgs[@]}" >"$dir/log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/pid"
	log "node $name: pid $pid, $ip (tchannel $base, node http $((base + 2)), cluster http $((base + 3))$([[ $coord == 1 ]] && echo ", coordinator 7201")), etcd $eps, dir $dir"
	# The node HTTP API listens before the node has a placement; the
	# cluster ports (9001, 9003) open only once the placement exists.
	while :; do
		kill -0 "$pid" 2>/dev/null || fail_start "$dir" "" "m3dbnode $name exited during startup"
		if curl -s --max-time 2 "http://$ip:$((base + 2))/health" 2>/dev/null | grep -q '"bootstrapped"'; then
			if [[ $coord == 0 ]] || curl -s --max-time 2 -o /dev/null "http://$ip:7201/health" 2>/dev/null; then
				break
			fi
		fi
		((SECONDS - t0 < START_TIMEOUT)) || fail_start "$dir" "$pid" "m3dbnode $name not listening after ${START_TIMEOUT}s"
		sleep 0.3
	done
	log "node $name listening after $((SECONDS - t0))s (RSS $(rss_mib "$pid") MiB)"
	echo "$pid"
}

bootstrapped() { # dir
	curl -s --max-time 3 "http://$(<"$1/ip"):$(($(port_base "$1") + 2))/health" 2>/dev/null | grep -q '"bootstrapped":true'
}

cmd_wait() {
	[[ $# -ge 1 && $# -le 2 ]] || die "usage: wait NAME [TIMEOUT]"
	local dir ip t0=$SECONDS limit=${2:-$INIT_TIMEOUT}
	dir=$(node_dir "$1")
	[[ $(kind_of "$dir") == m3db ]] || die "$1 is not an m3dbnode"
	ip=$(<"$dir/ip")
	until bootstrapped "$dir"; do
		node_pid "$dir" >/dev/null || { tail -30 "$dir/log" >&2; die "node $1 is not running"; }
		if ((SECONDS - t0 >= limit)); then
			tail -30 "$dir/log" >&2
			die "node $1 not bootstrapped after ${limit}s"
		fi
		sleep 1
	done
	log "node $1 bootstrapped (waited $((SECONDS - t0))s)"
}

# --- init-cluster ----------------------------------------------------------

cmd_init_cluster() {
	need curl
	need jq
	local -a specs=("$@") dirs=()
	[[ ${#specs[@]} -gt 0 ]] || specs=(default:12h)
	local d n
	if [[ -n ${M3DB_INIT_NODES:-} ]]; then
		IFS=, read -ra _names <<<"$M3DB_INIT_NODES"
		for n in "${_names[@]}"; do
			d=$(node_dir "$n")
			node_pid "$d" >/dev/null || die "node $n is not running"
			dirs+=("$d")
		done
	else
		mapfile -t dirs < <(running_m3_nodes)
	fi
	[[ ${#dirs[@]} -gt 0 ]] || die "no running m3dbnode (start them with $0 start NAME IP first)"
	local coord=""
	for d in "${dirs[@]}"; do
		if [[ -f $d/coordinator_port ]]; then
			coord="http://$(<"$d/ip"):$(<"$d/coordinator_port")"
			break
		fi
	done
	[[ -n $coord ]] || die "none of the nodes runs the embedded coordinator: start one with --coordinator"
	local rf=${M3DB_REPLICATION_FACTOR:-$((${#dirs[@]} < 3 ? ${#dirs[@]} : 3))}
	local shards=${M3DB_NUM_SHARDS:-16}
	local hosts="" t0=$SECONDS
	for d in "${dirs[@]}"; do
		hosts+=${hosts:+,}$(jq -cn --arg id "$(basename "$d")" --arg ip "$(<"$d/ip")" \
			--arg g "$(<"$d/isolation_group")" --arg z "$M3DB_ZONE" --argjson port "$(port_base "$d")" \
			'{id:$id, address:$ip, port:$port, isolationGroup:$g, zone:$z, weight:1}')
	done

	local have_placement=0 out
	if out=$(http_get "$coord/api/v1/services/m3db/placement" 2>/dev/null) &&
		[[ $(jq '.placement.instances | length' <<<"$out" 2>/dev/null || echo 0) -gt 0 ]]; then
		have_placement=1
		log "a placement exists already; only adding namespaces (placement changes: the coordinator's placement API)"
		for d in "${dirs[@]}"; do
			jq -e --arg id "$(basename "$d")" '.placement.instances | has($id)' <<<"$out" >/dev/null ||
				log "warning: running node $(basename "$d") is not in the existing placement"
		done
	fi
	local spec ns ret bs body names=()
	for spec in "${specs[@]}"; do
		IFS=: read -r ns ret bs <<<"$spec"
		[[ $ns =~ ^[A-Za-z0-9_-]+$ ]] || die "bad namespace spec '$spec' (NAME[:RETENTION[:BLOCKSIZE]])"
		ret=${ret:-12h}
		names+=("$ns")
		if [[ $have_placement == 0 ]]; then
			body=$(jq -cn --arg ns "$ns" --arg ret "$ret" --arg bs "${bs:-}" \
				--argjson shards "$shards" --argjson rf "$rf" --argjson hosts "[$hosts]" \
				'{type:"cluster", namespaceName:$ns, retentionTime:$ret, numShards:$shards,
				  replicationFactor:$rf, hosts:$hosts} + (if $bs != "" then {blockSize:{time:$bs}} else {} end)')
		else
			body=$(jq -cn --arg ns "$ns" --arg ret "$ret" --arg bs "${bs:-}" \
				'{type:"cluster", namespaceName:$ns, retentionTime:$ret}
				 + (if $bs != "" then {blockSize:{time:$bs}} else {} end)')
		fi
		if http_get "$coord/api/v1/services/m3db/namespace" 2>/dev/null |
			jq -e --arg ns "$ns" '.registry.namespaces | has($ns)' >/dev/null 2>&1 && [[ $have_placement == 1 ]]; then
			log "namespace $ns exists already"
			continue
		fi
		out=$(http_post "$coord/api/v1/database/create" "$body" 2>&1) ||
			die "database/create for namespace $ns failed: $out"
		have_placement=1
		log "created namespace $ns (retention $ret${bs:+, block $bs})"
	done

	# Every node bootstrapped, every shard AVAILABLE.
	local pending
	while :; do
		pending=""
		for d in "${dirs[@]}"; do
			bootstrapped "$d" || pending+=" $(basename "$d")"
		done
		if [[ -z $pending ]]; then
			out=$(http_get "$coord/api/v1/services/m3db/placement" 2>/dev/null) || out=""
			n=$(jq '[.placement.instances[].shards[] | select(.state != "AVAILABLE")] | length' <<<"$out" 2>/dev/null || echo x)
			[[ $n == 0 ]] && break
			pending=" (placement: $n shard replicas not AVAILABLE)"
		fi
		if ((SECONDS - t0 >= INIT_TIMEOUT)); then
			die "cluster not ready after ${INIT_TIMEOUT}s; waiting for:$pending"
		fi
		sleep 1
	done
	# Mark the namespaces ready (the coordinator checks the nodes first).
	for ns in "${names[@]}"; do
		until out=$(http_post "$coord/api/v1/services/m3db/namespace/ready" "{\"name\":\"$ns\"}" 2>&1); do
			if ((SECONDS - t0 >= INIT_TIMEOUT)); then
				die "namespace/ready for $ns failed: $out"
			fi
			sleep 1
		done
	done
	out=$(http_get "$coord/api/v1/services/m3db/placement")
	log "cluster ready: ${#dirs[@]} nodes, RF $(jq .placement.replicaFactor <<<"$out"), $(jq .placement.numShards <<<"$out") shards, namespaces ${names[*]} ($((SECONDS - t0))s)"
}

# --- stop, status, clean, logs, env ----------------------------------------

cmd_stop() {
	[[ $# -eq 1 ]] || die "usage: stop NAME"
	local dir pid
	dir=$(node_dir "$1")
	[[ -d $dir ]] || { log "no node $1 under $NODES: nothing to stop"; return 0; }
	if ! pid=$(node_pid "$dir"); then
		log "node $1 is not running"
		rm -f "$dir/pid"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local t0=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS - t0 >= STOP_TIMEOUT)); then
			log "node $1 (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.2
	done
	rm -f "$dir/pid"
	log "node $1 stopped after $((SECONDS - t0))s"
}

cmd_status() {
	printf '%-12s %-5s %-12s %-8s %-5s %-13s %-8s %s\n' NAME KIND IP PID STATE HEALTH RSS_MiB DATA
	[[ -d $NODES ]] || return 0
	local d name pid state health rss data kind ip
	for d in "$NODES"/*/; do
		d=${d%/}
		[[ -f $d/ip ]] || continue
		name=$(basename "$d") kind=$(kind_of "$d") ip=$(<"$d/ip")
		if pid=$(node_pid "$d"); then
			state=up
			rss=$(rss_mib "$pid")
			if [[ $kind == etcd ]]; then
				curl -s --max-time 2 "http://$ip:2379/health" | grep -q '"health":"true"' && health=healthy || health=unhealthy
			else
				health=$(bootstrapped "$d" && echo bootstrapped || echo not-bootstr.)
			fi
		else
			pid=- state=down rss=- health=-
		fi
		data=$(du -sh "$d/data" 2>/dev/null | cut -f1)
		printf '%-12s %-5s %-12s %-8s %-5s %-13s %-8s %s\n' "$name" "$kind" "$ip" "$pid" "$state" "$health" "$rss" "${data:--}"
	done
}

cmd_wipe() {
	[[ $# -eq 1 ]] || die "usage: wipe NAME"
	local d pid
	d=$(node_dir "$1")
	[[ -d $d && $(kind_of "$d") == m3db ]] || die "$1 is not an m3dbnode"
	if pid=$(node_pid "$d"); then
		die "node $1 is running (pid $pid); stop it first"
	fi
	rm -rf "$d/data" "$d/kvcache"
	log "wiped $1's data and kv cache"
}

cmd_etcd_wipe() {
	[[ $# -eq 1 ]] || die "usage: etcd-wipe NAME"
	local d ip
	d=$(node_dir "$1")
	[[ -d $d && $(kind_of "$d") == etcd ]] || die "$1 is not an etcd member"
	ip=$(<"$d/ip")
	cmd_stop "$1"
	rm -rf "$d/data"
	cmd_etcd_start "$1" "$ip"
	log "etcd $1 restarted empty"
}

cmd_clean() {
	[[ $# -eq 1 ]] || die "usage: clean NAME|--all"
	local d pid
	if [[ $1 == --all ]]; then
		[[ -d $NODES ]] || return 0
		for d in "$NODES"/*/; do
			[[ -f $d/kind ]] || continue
			cmd_clean "$(basename "$d")"
		done
		rmdir "$NODES" 2>/dev/null || true
		return 0
	fi
	d=$(node_dir "$1")
	[[ -d $d ]] || return 0
	if pid=$(node_pid "$d"); then
		die "node $1 is running (pid $pid); stop it first"
	fi
	rm -rf "$d"
	log "removed $d"
}

cmd_logs() {
	[[ $# -ge 1 ]] || die "usage: logs NAME [LINES]"
	local d
	d=$(node_dir "$1")
	tail -n "${2:-100}" "$d/log"
}

cmd_env() {
	[[ $# -eq 1 ]] || die "usage: env NAME"
	local d ip
	d=$(node_dir "$1")
	[[ -f $d/ip ]] || die "node $1 was never started"
	ip=$(<"$d/ip")
	if [[ $(kind_of "$d") == etcd ]]; then
		echo "ETCD_NODE_DIR=$d"
		echo "ETCD_IP=$ip"
		echo "ETCD_ENDPOINT=$ip:2379"
		echo "ETCD_DATA_DIR=$d/data"
		echo "ETCD_BIN_DIR=$(etcd_dir || true)"
		return 0
	fi
	echo "M3DB_NODE_DIR=$d"
	echo "M3DB_HOST_ID=$1"
	echo "M3DB_IP=$ip"
	echo "M3DB_DATA_DIR=$d/data"
	echo "M3DB_CONFIG=$d/config.yml"
	local base
	base=$(port_base "$d")
	echo "M3DB_PORT_BASE=$base"
	echo "M3DB_TCHANNEL=$ip:$base"
	echo "M3DB_NODE_HTTP=$ip:$((base + 2))"
	echo "M3DB_CLUSTER_HTTP=$ip:$((base + 3))"
	echo "M3DB_DEBUG_HTTP=$ip:$((base + 4))"
	if [[ -f $d/coordinator_port ]]; then
		echo "M3DB_COORDINATOR=$ip:$(<"$d/coordinator_port")"
	else
		echo "M3DB_COORDINATOR="
	fi
	echo "M3DB_ISOLATION_GROUP=$(<"$d/isolation_group")"
	echo "M3DB_ETCD_ENDPOINTS=$(<"$d/etcd_endpoints")"
	echo "M3DB_ENV=$M3DB_ENV"
	echo "M3DB_ZONE=$M3DB_ZONE"
	echo "M3DB_SERVICE=m3db"
	echo "M3DB_BIN=$M3_BIN"
}

main() {
	[[ $# -ge 1 ]] || die "usage: $0 install|check|etcd-start|start|init-cluster|wait|stop|status|clean|logs|env|etcdctl ..."
	local cmd=$1
	shift
	case "$cmd" in
	install) cmd_install ;;
	check) cmd_check ;;
	etcd-start) cmd_etcd_start "$@" ;;
	start) cmd_start "$@" ;;
	init-cluster) cmd_init_cluster "$@" ;;
	wait) cmd_wait "$@" ;;
	stop) cmd_stop "$@" ;;
	status) cmd_status ;;
	clean) cmd_clean "$@" ;;
	wipe) cmd_wipe "$@" ;;
	etcd-wipe) cmd_etcd_wipe "$@" ;;
	logs) cmd_logs "$@" ;;
	env) cmd_env "$@" ;;
	etcdctl) cmd_etcdctl "$@" ;;
	-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
	*) die "unknown command '$cmd'" ;;
	esac
}

main "$@"
