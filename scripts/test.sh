#!/usr/bin/env bash
# Runs every check and test: formatting, go vet, staticcheck, and
# go test -race over all packages (unit tests plus the multi-process
# integration tests under test/, which build the real binary), then the
# chaos harness on its own (a short run and the injected-bug test), so
# its cluster does not compete for the CPU with the timing-sensitive
# integration tests, then the real-Cassandra suite and the real-M3DB
# suite, each on its own.
#
# COVERAGE=1 measures statement coverage on the way (docs/coverage.md):
# the test binaries and the crayfish agents and clients the
# multi-process tests start count every package of the module, into
# $CRAYFISH_COVERAGE_DIR (default /tmp/crayfish-coverage); a failing
# suite no longer stops the run (the report wants all of them; the exit
# status is still 1), and scripts/coverage.sh prints per-package figures
# and the total at the end. Off by default: under -race the atomic
# counters slow CPU-bound tests by up to 2x, which tight deadlines feel.
set -euo pipefail
cd "$(dirname "$0")/.."

cover=()
coverdir=()
failed=()
if [ "${COVERAGE:-0}" = 1 ]; then
	export CRAYFISH_COVERAGE_DIR=${CRAYFISH_COVERAGE_DIR:-/tmp/crayfish-coverage}
	rm -rf "$CRAYFISH_COVERAGE_DIR"
	mkdir -p "$CRAYFISH_COVERAGE_DIR/unit" "$CRAYFISH_COVERAGE_DIR/agents"
	# internal/testbin builds the agents with coverage into agents/.
	export CRAYFISH_COVERDIR=$CRAYFISH_COVERAGE_DIR/agents
	# atomic: what -race demands, and the agents' builds use the same.
	cover=(-cover -covermode=atomic -coverpkg=github.com/crayfish-backup/crayfish/...)
	coverdir=(-args "-test.gocoverdir=$CRAYFISH_COVERAGE_DIR/unit")
fi
# gotest runs go test with the coverage flags when COVERAGE=1, where a
# failure is recorded and the run goes on.
gotest() {
	if [ ${#cover[@]} -eq 0 ]; then
		go test "$@"
	elif ! go test "${cover[@]}" "$@" "${coverdir[@]}"; then
		failed+=("go test $*")
	fi
}

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
# staticcheck is pinned; go install is a no-op once it is built.
GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
"$(go env GOPATH)/bin/staticcheck" ./...
# The Prometheus alert rules and their unit tests (promtool, from Debian's
# prometheus package; .ci/run installs it).
promtool check rules deploy/prometheus/crayfish-rules.yml
(cd deploy/prometheus && promtool test rules crayfish-rules.test.yml)
gotest -race -count=1 -timeout 25m -skip '^(TestCassandra|TestCassandra41|TestCassandraResize|TestCassandraPITR|TestM3DB)$' $(go list ./... | grep -v -e /test/chaos -e /test/m3db) "$@"
gotest -race -count=1 -timeout 20m ./test/chaos/ "$@"
# The real-Cassandra suites (Cassandra JVMs from the Maven Central jars,
# scripts/cassandra.sh: 5.0, then 4.1 with a password and TLS, then the
# restores onto clusters of another size and to a point in time side by
# side, t.Parallel) run alone: their start-ups would starve the
# timing-sensitive tests above.
gotest -race -count=1 -timeout 40m -run '^(TestCassandra|TestCassandra41|TestCassandraResize|TestCassandraPITR)$' ./test/integration/ "$@"
# The real-M3DB suite (three m3dbnode v1.5.0 and an etcd, scripts/m3db.sh)
# runs alone too: each node takes about 1 GB and two cores' worth of
# start-up. TestM3DB is the end-to-end backup and restores through three
# agents.
gotest -race -count=1 -timeout 10m ./test/m3db/ "$@"
gotest -race -count=1 -timeout 10m -run '^TestM3DB$' ./test/integration/ "$@"
if [ ${#cover[@]} -gt 0 ]; then
	./scripts/coverage.sh "$CRAYFISH_COVERAGE_DIR"
	if [ ${#failed[@]} -gt 0 ]; then
		printf 'FAILED: %s\n' "${failed[@]}" >&2
		exit 1
	fi
fi
