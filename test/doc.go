// Package test holds crayfish's multi-process tests: they build the real
// binary and run agents as separate processes against real directories
// and repositories. Subpackages: integration (single-node flows); later,
// cluster and chaos suites. Nothing here is imported by production code.
package test
