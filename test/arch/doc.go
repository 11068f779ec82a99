// Package arch holds the architecture test: the import rules of the
// design (docs/design.md, "Package map") checked from `go list` on every
// run of the suite, so a forbidden import fails CI with its name instead
// of eroding the layering unnoticed.
//
// It owns only the rules; it imports nothing of crayfish.
package arch
