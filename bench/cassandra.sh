#!/usr/bin/env bash
# Cassandra backup/restore benchmark: one real Cassandra 5.0 node holding
# about $MIB MiB of SSTables (incompressible blobs), backed up and restored
# by crayfish (one agent, cassandra plugin) and by Medusa (cassandra-medusa
# 0.31 from PyPI) in the same run, on the same node, disk and object store.
#
#   ./bench/cassandra.sh                 # 1 GiB on SeaweedFS's S3 (weed built and cached on first use)
#   MIB=256 ./bench/cassandra.sh         # quicker
#   STORE=file ./bench/cassandra.sh      # a file:// repository and Medusa's local backend
#
# The object store is a real S3 server: SeaweedFS (scripts/seaweedfs.sh,
# on $BENCH_S3_IP), with one bucket for crayfish and one for Medusa. Medusa
# is installed into $HOME/.cache/crayfish/medusa-venv when missing
# (MEDUSA=path uses another; MEDUSA=none skips it). It gets 4 concurrent
# transfers and no bandwidth cap (its defaults are 1 and 50 MB/s), so it
# is compared at its best.
#
# Prints wall time, MB/s and the agent's peak RSS for: a first backup, an
# unchanged re-run, a full restore and a single-node restore of the wiped
# node, and a restore onto two other nodes (a cluster of another size:
# streamed with sstableloader), each checked: the row digest after the
# restore equals the one before; then Medusa's backup, differential
# re-run and restore-node, and both repositories' sizes; then a restore
# to a point in time (PITR_MIB MiB of writes after a backup, replayed
# from the shipped commit-log segments up to a time T), checked against
# the rows read at T. The cost to the database: a read load of
# READ_RATE random row reads per second runs alone for 10 s, then during
# crayfish's first backup and during Medusa's; each prints its p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

MIB=${MIB:-1024}
PITR_MIB=${PITR_MIB:-64}
IP=${BENCH_CASSANDRA_IP:-127.0.5.1}
STORE=${STORE:-s3}
READ_RATE=${READ_RATE:-200}
S3_IP=${BENCH_S3_IP:-127.0.14.9}
work=${BENCH_DIR:-/tmp/crayfish-cassandra-bench}
MEDUSA=${MEDUSA:-$(command -v medusa || true)}
if [[ -z $MEDUSA ]]; then
	venv=${HOME:-/root}/.cache/crayfish/medusa-venv
	if [[ ! -x $venv/bin/medusa ]]; then
		echo "installing cassandra-medusa 0.31.0 into $venv"
		python3 -m venv "$venv" && "$venv/bin/pip" install -q cassandra-medusa==0.31.0 || echo "medusa: pip install failed"
	fi
	[[ -x $venv/bin/medusa ]] && MEDUSA=$venv/bin/medusa
fi
[[ $MEDUSA == none ]] && MEDUSA=
export CRAYFISH_CASSANDRA_NODES=$work/nodes
# One data directory: Medusa supports no more (crayfish does; the
# Cassandra suite runs two).
export CASSANDRA_DATA_DIR_COUNT=1
bin=$PWD/bin/crayfish
script=$PWD/scripts/cassandra.sh
go build -o "$bin" ./cmd/crayfish
mkdir -p "$work"
go build -o "$work/cassandraload" ./bench/cassandraload

cleanup() {
	[[ -n ${load_pid:-} ]] && kill "$load_pid" 2>/dev/null || true
	[[ $STORE == s3 ]] && scripts/seaweedfs.sh stop bench >/dev/null 2>&1 || true
	[[ -n ${agent_pid:-} ]] && kill "$agent_pid" 2>/dev/null || true
	[[ -n ${resize_pids:-} ]] && kill "${resize_pids[@]}" 2>/dev/null || true
	for n in b1 b2 b3; do "$script" stop "$n" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
"$script" stop b1 >/dev/null 2>&1 || true
rm -rf "$work/nodes" "$work/agent" "$work/agent-r2" "$work/agent-r3" "$work/repo" "$work/medusa"
mkdir -p "$work"

node_dir=$work/nodes/b1
"$script" start b1 "$IP" >/dev/null
"$work/cassandraload" -host "$IP" -mib "$MIB"
"$script" nodetool b1 flush bench
before=$("$work/cassandraload" -host "$IP" -check)
sstable_bytes=$(du -sb "$node_dir"/data*/bench | awk '{s+=$1} END {print s}')
echo "sstables: $((sstable_bytes / 1048576)) MiB; $before"

case $STORE in
s3)
	scripts/seaweedfs.sh install
	scripts/seaweedfs.sh stop bench
	rm -rf "${CRAYFISH_SEAWEEDFS_DIR:-/tmp/crayfish-seaweedfs}/bench"
	SEAWEEDFS_BUCKETS=crayfish,medusa scripts/seaweedfs.sh start bench "$S3_IP" 2>/dev/null
	eval "$(scripts/seaweedfs.sh env bench)"
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	REPO=$(scripts/seaweedfs.sh url bench crayfish bench)
	;;
file) REPO=file://$work/repo ;;
*) echo "STORE is s3 or file, not $STORE" >&2; exit 2 ;;
esac
echo "store: $STORE ($REPO)"
# repo_bytes WHICH: the bytes crayfish's (crayfish) or Medusa's (medusa)
# repository holds.
repo_bytes() {
	if [[ $STORE == s3 ]]; then
		scripts/seaweedfs.sh du bench "$1"
	elif [[ $1 == crayfish ]]; then
		du -sb "$work/repo" | cut -f1
	else
		du -sb "$work/medusa/storage" | cut -f1
	fi
}
"$bin" init --repository "$REPO" --key-file "$work/repo.key" >/dev/null
# start_agent LOG [FLAGS...]: node b1's agent, in the background.
start_agent() {
	local log=$1
	shift
	"$bin" agent --node-id b1 --data-dir "$work/agent" --repository "$REPO" --key-file "$work/repo.key" \
		--http-addr 127.0.0.1:7390 --raft-addr 127.0.0.1:7391 --gossip-addr 127.0.0.1:7392 \
		--plugin cassandra --cassandra-hosts "$IP" \
		--cassandra-data-dirs "$node_dir/data1" --cassandra-commitlog-dir "$node_dir/commitlog" \
		--cassandra-saved-caches-dir "$node_dir/saved_caches" --cassandra-hints-dir "$node_dir/hints" \
		--cassandra-nodetool "$script nodetool b1" --cassandra-start-command "$script start b1 $IP" \
		--cassandra-stop-command "$script stop b1" "$@" >"$log" 2>&1 &
	agent_pid=$!
}
start_agent "$work/agent.log"
for _ in $(seq 100); do
	"$bin" --url http://127.0.0.1:7390 cluster >/dev/null 2>&1 && break
	sleep 0.2
done

report() { # name seconds
	local rss
	rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$agent_pid/status")
	printf '%-28s %8.1f s %8.1f MB/s   agent peak RSS %s MiB\n' "$1" "$2" "$(echo "$sstable_bytes / 1000000 / $2" | bc -l)" "$rss"
}

cf() { "$bin" --url http://127.0.0.1:7390 "$@"; }
# read_load_start / read_load_stop LABEL: the concurrent read load.
read_load_start() {
	"$work/cassandraload" -host "$IP" -mib "$MIB" -read-rate "$READ_RATE" -workers 8 >"$work/load.out" 2>&1 &
	load_pid=$!
	sleep 2 # connected and counted the rows
}
read_load_stop() {
	kill -TERM "$load_pid" && wait "$load_pid" || true
	load_pid=
	printf '%-28s %s\n' "read load ($1)" "$(tail -1 "$work/load.out")"
}
read_load_start
sleep 10
read_load_stop "alone"
read_load_start
t=$(timeit cf backup --wait --no-progress)
read_load_stop "crayfish backup"
report "crayfish backup" "$t"
t=$(timeit cf backup --wait --no-progress)
report "crayfish backup (unchanged)" "$t"
backup=$(cf list --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
"$script" stop b1 >/dev/null
rm -rf "$node_dir"/data1/* "$node_dir"/commitlog/*
t=$(timeit cf restore "$backup" --wait --no-progress)
report "crayfish full restore" "$t"
after=$("$work/cassandraload" -host "$IP" -check)
[[ $after == "$before" ]] || { echo "crayfish restore: rows differ: $after" >&2; exit 1; }
echo "crayfish restore verified: $after"
# The single-node restore (one Cassandra restart, system keyspaces back
# from the backup) is what Medusa's restore-node does.
"$script" stop b1 >/dev/null
rm -rf "$node_dir"/data1/* "$node_dir"/commitlog/*
t=$(timeit cf restore "$backup" --node b1 --wait --no-progress)
report "crayfish single-node restore" "$t"
after=$("$work/cassandraload" -host "$IP" -check)
[[ $after == "$before" ]] || { echo "crayfish node restore: rows differ: $after" >&2; exit 1; }
echo "crayfish node restore verified: $after"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=

# The same backup onto a cluster of another size (two new nodes, their own
# crayfish cluster on the same repository): streamed with Cassandra's bulk
# loader instead of linked by token. b1 stops meanwhile (the machine has
# two cores) and comes back for Medusa.
"$script" stop b1 >/dev/null
IP2=${IP%.*}.$((${IP##*.} + 1)) IP3=${IP%.*}.$((${IP##*.} + 2))
"$script" start b2 "$IP2" >/dev/null
"$script" start b3 "$IP3" "$IP2" >/dev/null
resize_pids=()
for i in 2 3; do
	ip_var=IP$i
	ip=${!ip_var}
	d=$work/nodes/b$i
	join=()
	[[ $i == 3 ]] && join=(--join 127.0.0.1:7395) # r2's gossip
	"$bin" agent --node-id "r$i" --data-dir "$work/agent-r$i" --repository "$REPO" --key-file "$work/repo.key" \
		--http-addr "127.0.0.1:$((7390 + 3 * (i - 1)))" --raft-addr "127.0.0.1:$((7391 + 3 * (i - 1)))" \
		--gossip-addr "127.0.0.1:$((7392 + 3 * (i - 1)))" --bootstrap-expect 2 "${join[@]}" \
		--plugin cassandra --cassandra-hosts "$ip" \
		--cassandra-data-dirs "$d/data1" --cassandra-commitlog-dir "$d/commitlog" \
		--cassandra-saved-caches-dir "$d/saved_caches" --cassandra-hints-dir "$d/hints" \
		--cassandra-nodetool "$script nodetool b$i" --cassandra-sstableloader "$script sstableloader b$i" \
		--cassandra-start-command "$script start b$i $ip $IP2" --cassandra-stop-command "$script stop b$i" \
		>"$work/agent-r$i.log" 2>&1 &
	resize_pids+=($!)
done
for _ in $(seq 150); do
	"$bin" --url http://127.0.0.1:7393 cluster 2>/dev/null | grep -q leader && break
	sleep 0.2
done
agent_pid=${resize_pids[0]}
t=$(timeit "$bin" --url http://127.0.0.1:7393 restore "$backup" --wait --no-progress)
report "crayfish restore onto 2 nodes" "$t"
after=$("$work/cassandraload" -host "$IP2" -check)
[[ $after == "$before" ]] || { echo "crayfish restore onto 2 nodes: rows differ: $after" >&2; exit 1; }
echo "crayfish restore onto 2 nodes verified: $after"
kill "${resize_pids[@]}"; wait "${resize_pids[@]}" 2>/dev/null || true; agent_pid=
"$script" stop b2 >/dev/null; "$script" stop b3 >/dev/null
"$script" start b1 "$IP" >/dev/null

medusa_phase() {
	if [[ -z $MEDUSA ]]; then
		echo "medusa: not installed (pip install cassandra-medusa; MEDUSA=path) — no comparison"
		return 0
	fi
	mkdir -p "$work/medusa/storage/medusa"
	local storage
	if [[ $STORE == s3 ]]; then
		printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/medusa/credentials"
		# No leading tabs: configparser reads an indented line as a continuation.
		storage=$(printf '%s\n' "storage_provider = s3_compatible" "bucket_name = medusa" \
			"key_file = $work/medusa/credentials" "host = $S3_IP" "port = 8333" "secure = False" \
			"ssl_verify = False" "region = us-east-1")
	else
		storage=$(printf '%s\n' "storage_provider = local" "base_path = $work/medusa/storage" "bucket_name = medusa")
	fi
	cat >"$work/medusa/medusa.ini" <<-EOF
	[cassandra]
	config_file = $node_dir/conf/cassandra.yaml
	cql_username =
	cql_password =
	nodetool_host = 127.0.0.1
	nodetool_port = $(<"$node_dir/jmx_port")
	start_cmd = $script start b1 $IP
	stop_cmd = $script stop b1
	resolve_ip_addresses = False
	use_sudo = False

	[storage]
	$storage
	fqdn = $IP
	concurrent_transfers = 4
	transfer_max_bandwidth = 10000MB/s
	prefix = bench
	multi_part_upload_threshold = 104857600
	use_sudo_for_restore = False

	[monitoring]
	monitoring_provider = None

	[logging]
	enabled = 1
	file = $work/medusa/medusa.log
	level = INFO
EOF
	# Medusa runs `nodetool -h H -p P ...` from PATH: a shim sends it to the
	# node's own nodetool (the script adds host and port itself).
	mkdir -p "$work/shims"
	cat >"$work/shims/nodetool" <<-SHIM
	#!/usr/bin/env bash
	args=()
	while [[ \$# -gt 0 ]]; do
		case \$1 in -h|-p|--host|--port|-u|-pw) shift 2 ;; -D*) shift ;; *) args+=("\$1"); shift ;; esac
	done
	exec "$script" nodetool b1 "\${args[@]}"
SHIM
	chmod +x "$work/shims/nodetool"
	export PATH=$work/shims:$PATH
	medusa() { "$MEDUSA" --config-file "$work/medusa/medusa.ini" --fqdn "$IP" "$@"; }
	read_load_start
	t0=$(date +%s.%N)
	medusa backup --backup-name b1 --mode full >"$work/medusa/backup.out" 2>&1 || { read_load_stop "medusa backup"; echo "medusa backup failed:"; tail -20 "$work/medusa/backup.out"; return 0; }
	t1=$(date +%s.%N)
	read_load_stop "medusa backup"
	# Medusa exits 0 even when its snapshot failed: check it stored files.
	if grep -q -- '- 0 files,' "$work/medusa/backup.out"; then echo "medusa backup stored nothing:"; grep ERROR "$work/medusa/backup.out" | head -5; return 0; fi
	printf '%-28s %8.1f s\n' "medusa backup" "$(echo "$t1 - $t0" | bc -l)"
	t0=$(date +%s.%N)
	medusa backup --backup-name b2 --mode differential >"$work/medusa/backup2.out" 2>&1 || { echo "medusa re-run failed:"; tail -20 "$work/medusa/backup2.out"; return 0; }
	printf '%-28s %8.1f s\n' "medusa backup (unchanged)" "$(echo "$(date +%s.%N) - $t0" | bc -l)"
	"$script" stop b1 >/dev/null
	rm -rf "$node_dir"/data1/* "$node_dir"/commitlog/*
	t0=$(date +%s.%N)
	medusa restore-node --backup-name b1 >"$work/medusa/restore.out" 2>&1 || { echo "medusa restore failed:"; tail -20 "$work/medusa/restore.out"; return 0; }
	printf '%-28s %8.1f s\n' "medusa restore-node" "$(echo "$(date +%s.%N) - $t0" | bc -l)"
	after=$("$work/cassandraload" -host "$IP" -check)
	echo "medusa restore: $after (before: $before)"
	[[ $after == "$before" ]] && echo "medusa restore verified" || echo "medusa restore: rows differ"
	printf 'repository size after two backups: crayfish %d MiB, medusa %d MiB\n' \
		$(($(repo_bytes crayfish) / 1048576)) $(($(repo_bytes medusa) / 1048576))
}

# A restore to a point in time: the agent ships Cassandra's closed
# commit-log segments (cassandra_commitlog_archive, every 2 s here); a
# backup B0 (bench.log and bench.filler created empty before it), then
# PITR_MIB MiB of writes to bench.log in 4 KiB rows, the time
# T, 16 MiB of filler (closes the 8 MiB segment holding T), then the
# wiped node restored to T: B0's files, then Cassandra's replay of the
# shipped segments up to T, checked against bench.log as read at T.
pitr_phase() {
	"$script" stop b1 >/dev/null
	start_agent "$work/agent-pitr.log" --cassandra-log-file "$node_dir/logs/system.log" \
		--cassandra-commitlog-archive --cassandra-commitlog-archiving-file "$node_dir/conf/commitlog_archiving.properties" \
		--log-ship-interval 2s
	for _ in $(seq 100); do
		[[ -s $node_dir/conf/commitlog_archiving.properties ]] && cf cluster >/dev/null 2>&1 && break
		sleep 0.2
	done
	"$script" start b1 "$IP" >/dev/null # reads the archiving properties the agent wrote
	# The tables exist in B0: a restore to a time restores B0's schema.
	"$work/cassandraload" -host "$IP" -table log -mib 0 >/dev/null
	"$work/cassandraload" -host "$IP" -table filler -mib 0 >/dev/null
	cf backup --wait --no-progress >/dev/null 2>&1
	"$work/cassandraload" -host "$IP" -table log -mib "$PITR_MIB" -row-kib 4 -workers 8
	local at want shipped_after
	at=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	want=$("$work/cassandraload" -host "$IP" -table log -check)
	"$work/cassandraload" -host "$IP" -table filler -mib 16 >/dev/null
	"$work/cassandraload" -host "$IP" -table log -mib 1 -row-kib 8 -workers 1 >/dev/null # after T, other rows: not replayed
	sleep 1 # the archive command runs once the segment closed
	shipped_after=$(date +%s.%N)
	for _ in $(seq 120); do
		curl -s http://127.0.0.1:7390/metrics | awk -v t="$shipped_after" \
			'/^crayfish_log_shipping_last_success_timestamp_seconds / {ok = $2 >= t} /^crayfish_log_shipping_lag_seconds / {lag = $2} END {exit !(ok && lag == 0)}' && break
		sleep 0.5
	done
	"$script" stop b1 >/dev/null
	rm -rf "${node_dir:?}"/data1/* "$node_dir"/commitlog/*
	local t0 t
	t0=$(date +%s.%N)
	cf restore --to-time "$at" --wait --no-progress --output json >"$work/pitr-op.json"
	t=$(echo "$(date +%s.%N) - $t0" | bc -l)
	report "crayfish restore to a time" "$t"
	python3 - "$t" "$work/pitr-op.json" <<-'PY'
	import json, sys
	op = json.load(open(sys.argv[2]))
	total = float(sys.argv[1])
	segs = staged = mutations = ms = 0
	mib = 0.0
	for st in op["steps"]:
	    res = st.get("result") or {}
	    plugin = res.get("plugin") or {}
	    if "replay_ms" in plugin:
	        segs += plugin["segments"]; staged += plugin["staged"]; mutations += plugin["mutations"]; ms += plugin["replay_ms"]
	    if (st.get("input") or {}).get("plugin", {}).get("action") == "segments":
	        mib += (res.get("downloaded_bytes", 0) + res.get("kept_bytes", 0)) / 1048576
	print(f"  replayed {segs} of {staged} staged segments ({mib:.0f} MiB of commit log), {mutations} mutations in {ms} ms of Cassandra's replay:"
	      f" {segs / max(ms / 1000, 0.001):.1f} segments/s, {mib / max(ms / 1000, 0.001):.1f} MiB/s; recovered to T in {total:.1f} s")
	PY
	local got
	got=$("$work/cassandraload" -host "$IP" -table log -check)
	[[ $got == "$want" ]] || { echo "crayfish restore to a time: bench.log $got, want $want (at T)" >&2; exit 1; }
	echo "crayfish restore to a time verified: bench.log $got as at T"
	after=$("$work/cassandraload" -host "$IP" -check)
	[[ $after == "$before" ]] || { echo "crayfish restore to a time: bench.blobs differ: $after" >&2; exit 1; }
}

medusa_phase
pitr_phase
