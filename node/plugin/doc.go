// Package plugin is the seam between the crayfish node and the databases
// it backs up, in the style of database/sql/driver: a few small
// interfaces and plain types, importing nothing of its users.
//
// A Driver is what cmd/crayfish registers, one per database ("files" and
// "cassandra" today). It carries the plugin's configuration type (its
// YAML keys, flags and CRAYFISH_* variables are generated from the
// struct's yaml and help tags, with the driver's prefix), a pure restore
// planner, and opens the node-side Plugin: snapshot into a directory and
// say which tree to back up, release, and the two halves of a restore
// step (what to download where, then what to do with it).
//
// It owns these types and the permanent-error mark. It must not import
// any other crayfish package (the architecture test in test/arch checks
// this): the node depends on it, and so does every plugin, never the
// other way round.
package plugin
