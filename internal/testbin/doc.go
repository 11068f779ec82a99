// Package testbin builds the crayfish binary that the multi-process tests
// (test/integration, test/chaos) run as agents and clients, in one place,
// so that every such test can be measured for coverage the same way.
//
// With CRAYFISH_COVERDIR set (scripts/test.sh does so with COVERAGE=1;
// docs/coverage.md), the binary is built with -cover over every package
// of the module, and GOCOVERDIR is set in this process's environment:
// the harnesses start agents with the inherited environment (plus their
// own additions), so each agent, and each CLI run, writes its counters
// there when it exits normally (returning from main or os.Exit; not
// after SIGKILL).
//
// It is a leaf: standard library only.
package testbin
