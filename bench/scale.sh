#!/usr/bin/env bash
# Scale model, cluster size: how the cost of a backup and a restore grows
# with the number of agents (issue 17).
#
#   ./bench/scale.sh                      # N = 3 10 30 50 agents
#   NODES=3 ./bench/scale.sh              # a quick check (~30 s)
#   NODES="3 10" FILES=100 nice -n 10 ./bench/scale.sh
#
# For each N it starts N real agents (bin/crayfish, built here) on
# 127.0.13.1 … 127.0.13.N (ports 7300-7302 on each address), bootstrapped
# together by gossip, sharing one file:// repository. Each node's root
# holds $FILES small files of its own (1-8 KiB) and one $SHARED_MIB MiB
# file all nodes share (the dedup step gives its chunks to one node). It
# runs a backup and a restore (into a target, every node its own
# directory) through node 1 and prints per N:
#   backup_s, restore_s      wall time of `crayfish backup|restore --wait`
#   leader_cpu_s             the leader's CPU seconds (user+system, from
#                            /proc/<pid>/stat) during the backup / restore
#   leader_hwm_mib           the leader's peak RSS (VmHWM, reset before
#                            each phase through /proc/<pid>/clear_refs)
#   raft_bytes/op            bytes of Raft log entries of the backup and of
#                            the restore, and the largest entry (read from a
#                            stopped agent's raft.db by bench/scaletool)
#   fsm_snapshot             the size of the FSM snapshot that log replays to
#   failover_s               SIGKILL the leader, time until another node
#                            names a new leader and that leader answers
#                            /v1/cluster
# Needs curl and python3. Agents log to $BENCH_DIR/n<N>/a<i>/agent.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

NODES=${NODES:-3 10 30 50}
FILES=${FILES:-50}
SHARED_MIB=${SHARED_MIB:-2}
work=${BENCH_DIR:-/tmp/crayfish-scale}
HTTP_PORT=7300 RAFT_PORT=7301 GOSSIP_PORT=7302

for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "scale.sh needs $tool" >&2; exit 1; }
done
bin=$PWD/bin/crayfish
go build -o "$bin" ./cmd/crayfish
go build -o "$PWD/bin/scaletool" ./bench/scaletool
rm -rf "$work"
mkdir -p "$work"
tck=$(getconf CLK_TCK)
pids=()

ip() { echo "127.0.13.$1"; }
url() { echo "http://$(ip "$1"):$HTTP_PORT"; }
cpu_s() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

stop_all() {
	local p
	for p in "${pids[@]}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
	for p in "${pids[@]}"; do if [ -n "$p" ]; then wait "$p" 2>/dev/null || true; fi; done
	pids=()
}
trap stop_all EXIT

gen_root() { # dir, node index
	python3 - "$1" "$2" "$FILES" "$SHARED_MIB" <<'PY'
import os, random, sys
root, node, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(node)
for i in range(n):
    d = os.path.join(root, "own", "d%02d" % (i % 10))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(r.randbytes(r.randint(1024, 8192)))
os.makedirs(os.path.join(root, "shared"), exist_ok=True)
with open(os.path.join(root, "shared", "common.bin"), "wb") as f:
    f.write(random.Random(0).randbytes(mib << 20))
PY
}

# wait_cluster N: until node 1 sees a leader and N members in Raft.
wait_cluster() {
	local n=$1 deadline=$((SECONDS + 180)) got
	while [ $SECONDS -lt $deadline ]; do
		got=$(curl -fsS "$(url 1)/v1/cluster" 2>/dev/null |
			json "sum(1 for m in d['members'] if m['suffrage']) if d['leader_id'] else 0" 2>/dev/null || echo 0)
		[ "$got" = "$n" ] && return 0
		sleep 0.5
	done
	echo "the cluster of $n did not form (node 1 sees $got in Raft)" >&2
	exit 1
}

leader_index() { # the index of the leader as node $1 sees it
	curl -fsS "$(url "$1")/v1/cluster" | json "d['leader_id']" | sed 's/^s//'
}

printf '%-4s %9s %10s %12s %13s %10s %11s %14s %14s %11s %12s %11s\n' \
	nodes backup_s restore_s backup_cpu_s restore_cpu_s backup_hwm restore_hwm raft_B/backup raft_B/restore max_entry fsm_snapshot failover_s
for n in $NODES; do
	d=$work/n$n
	mkdir -p "$d"
	"$bin" init --repository "file://$d/repo" --key-file "$d/key" >/dev/null
	for i in $(seq "$n"); do
		a=$d/a$i
		mkdir -p "$a/data"
		gen_root "$a/root" "$i"
		join=()
		[ "$i" -gt 1 ] && join=(--join "$(ip 1):$GOSSIP_PORT")
		"$bin" agent --node-id "s$i" --data-dir "$a/data" --root "$a/root" --repository "file://$d/repo" --key-file "$d/key" \
			--http-addr "$(ip "$i"):$HTTP_PORT" --raft-addr "$(ip "$i"):$RAFT_PORT" --gossip-addr "$(ip "$i"):$GOSSIP_PORT" \
			--cluster-name "scale$n" --bootstrap-expect "$n" --node-timeout 60s --log-level warn "${join[@]}" >"$a/agent.log" 2>&1 &
		pids[i]=$!
	done
	wait_cluster "$n"
	l=$(leader_index 1)
	lp=${pids[l]}
	export CRAYFISH_URL
	CRAYFISH_URL=$(url 1)

	echo 5 >"/proc/$lp/clear_refs"
	c0=$(cpu_s "$lp") t0=$(now)
	"$bin" backup --wait --output json >"$d/backup.json" || { echo "backup failed (N=$n)" >&2; cat "$d/backup.json" >&2; exit 1; }
	t1=$(now) c1=$(cpu_s "$lp") h1=$(hwm_mib "$lp")
	backup_id=$(json "d['backup_id']" <"$d/backup.json")

	echo 5 >"/proc/$lp/clear_refs"
	c2=$(cpu_s "$lp") t2=$(now)
	"$bin" restore "$backup_id" --target "$d/restore" --wait --output json >"$d/restore.json" ||
		{ echo "restore failed (N=$n)" >&2; cat "$d/restore.json" >&2; exit 1; }
	t3=$(now) c3=$(cpu_s "$lp") h3=$(hwm_mib "$lp")
	if [ "$n" -gt 1 ]; then
		cmp -s "$d/a1/root/shared/common.bin" "$d/restore/s1/shared/common.bin" || { echo "restore differs (N=$n)" >&2; exit 1; }
	fi

	# Failover: kill the leader; another node must name a new one, which answers.
	o=1
	[ "$l" = 1 ] && o=2
	f=-
	if [ "$n" -gt 1 ]; then
		kill -9 "$lp"
		wait "$lp" 2>/dev/null || true
		pids[l]=
		tf0=$(now)
		while :; do
			nl=$(leader_index "$o" 2>/dev/null || true)
			if [ -n "$nl" ] && [ "$nl" != "$l" ] && curl -fsS -m 1 "$(url "$nl")/v1/cluster" >/dev/null 2>&1; then break; fi
			if [ "$(echo "$(now) - $tf0 > 120" | bc -l)" = 1 ]; then echo "no new leader in 120 s (N=$n)" >&2; exit 1; fi
			sleep 0.05
		done
		f=$(printf '%.2f' "$(echo "$(now) - $tf0" | bc -l)")
	fi
	stop_all
	"$PWD/bin/scaletool" "$d/a$o/data/raft/raft.db" >"$d/raft.txt"
	rb=$(awk '/^kind=backup /{sub("bytes=","",$4); print $4}' "$d/raft.txt")
	rr=$(awk '/^kind=restore /{sub("bytes=","",$4); print $4}' "$d/raft.txt")
	me=$(awk '/^log entries/{for (i=1;i<=NF;i++) if ($i=="largest") print $(i+2)}' "$d/raft.txt")
	fs=$(awk '/^log entries/{for (i=1;i<=NF;i++) if ($i=="snapshot") print $(i+1)}' "$d/raft.txt")
	printf '%-4s %9.2f %10.2f %12.2f %13.2f %10s %11s %14s %14s %11s %12s %11s\n' "$n" \
		"$(echo "$t1 - $t0" | bc -l)" "$(echo "$t3 - $t2" | bc -l)" "$(echo "$c1 - $c0" | bc -l)" "$(echo "$c3 - $c2" | bc -l)" \
		"${h1}MiB" "${h3}MiB" "$rb" "$rr" "$me" "$fs" "$f"
	rm -rf "$d/repo" "$d/restore" "$d"/a*/root
done
