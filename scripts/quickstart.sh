#!/usr/bin/env bash
# Quickstart: build crayfish, start a local agent (a Raft cluster of one)
# on an embedded default, back up a sample directory into a file://
# repository, damage the directory, restore it, and verify the result.
# Everything lives under ${CRAYFISH_QUICKSTART_DIR:-/tmp/crayfish-quickstart}.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${CRAYFISH_QUICKSTART_DIR:-/tmp/crayfish-quickstart}
bin=$PWD/bin/crayfish
http_addr=${CRAYFISH_HTTP_ADDR:-127.0.0.1:7300}
raft_addr=${CRAYFISH_RAFT_ADDR:-127.0.0.1:7301}
export CRAYFISH_URL="http://$http_addr"

echo "==> building $bin"
go build -o "$bin" ./cmd/crayfish

echo "==> preparing $work"
rm -rf "$work"
mkdir -p "$work/sample/docs/nested" "$work/sample/empty-dir"
printf 'hello from crayfish\n' >"$work/sample/hello.txt"
printf 'a file whose name has spaces and ünïcödé\n' >"$work/sample/docs/notes ünïcödé.txt"
head -c 5000000 /dev/urandom >"$work/sample/docs/nested/random.bin"
: >"$work/sample/empty.txt"
ln -s hello.txt "$work/sample/link-to-hello"
chmod 600 "$work/sample/hello.txt"
cp -a "$work/sample" "$work/expected"

echo "==> starting the agent (log: $work/agent.log)"
"$bin" agent --node-id quickstart --data-dir "$work/data" --root "$work/sample" \
	--http-addr "$http_addr" --raft-addr "$raft_addr" >"$work/agent.log" 2>&1 &
agent_pid=$!
trap 'kill $agent_pid 2>/dev/null; wait $agent_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	"$bin" cluster --output json 2>/dev/null | grep -q '"state": "Leader"' && break
	sleep 0.1
done
"$bin" cluster

echo "==> backup"
"$bin" backup --wait
"$bin" list

echo "==> damaging the sample directory"
rm -rf "$work/sample/docs"
printf 'overwritten\n' >"$work/sample/hello.txt"
printf 'junk\n' >"$work/sample/junk.txt"

echo "==> restore (latest backup) into the live root"
"$bin" restore --wait
"$bin" status

echo "==> verifying"
if diff -r --no-dereference "$work/expected" "$work/sample"; then
	echo "OK: restored tree matches the original byte for byte"
else
	echo "FAILED: restored tree differs" >&2
	exit 1
fi
stat -c '%a %n' "$work/sample/hello.txt"
echo "Repository: $work/data/repository (file://, encrypted; the agent generated its key file $work/data/repository.key: keep it). Agent stopped on exit."
