package arch

import (
	"fmt"
	"slices"
	"strings"
)

// Module is the crayfish module path.
const Module = "github.com/crayfish-backup/crayfish"

// Plugins are the database plugin packages (module-relative). cmd/crayfish
// is the only place that lists them for the agent; a new plugin is added
// here too.
var Plugins = []string{"cassandra", "m3db", "node/plugin/files"}

// Package is one package of the module: its module-relative path, its
// direct imports and every package it depends on (module-relative for
// the module's own; others as "/" followed by their full path).
type Package struct {
	Path    string
	Imports []string
	Deps    []string
}

// Check applies the rules to the module's packages and returns one line
// per violation, naming the package and the offending import.
//
//   - node (every package under it but the plugins and the test helper
//     node/plugin/plugintest), fsm, storage and transport import no
//     plugin, directly or not;
//   - fsm imports nothing of node;
//   - node/plugin, the seam, and node/tree/pattern import nothing of the
//     module;
//   - a plugin imports nothing of the module but the seam, the leaf
//     node/tree/pattern and internal/ leaves (and its own subpackages);
//   - the coordinator (node/coord) and the node worker (node/worker) do
//     not import each other, and the coordinator reaches no node's disk
//     (node/tree, node/hashcache); what they share is node/wire, which
//     imports neither;
//   - internal/ packages are leaves.
func Check(pkgs []Package) []string {
	var bad []string
	for _, p := range pkgs {
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, "/") { // the module's own
				if v := violation(p.Path, d); v != "" {
					bad = append(bad, fmt.Sprintf("%s imports %s%s: %s", p.Path, d, via(p, d, pkgs), v))
				}
			}
		}
	}
	slices.Sort(bad)
	return bad
}

func violation(pkg, dep string) string {
	switch {
	case isPlugin(dep) && isCore(pkg) && !isPlugin(pkg):
		return "the core must not import a plugin (plugins reach the node through node/plugin; cmd/crayfish registers them)"
	case under(pkg, "fsm") && under(dep, "node"):
		return "fsm is the pure state machine: it imports nothing of node"
	case (pkg == "node/plugin" || pkg == "node/tree/pattern") && !sameTree(pkg, dep):
		return "the plugin seam and the pattern language are leaves: standard library only"
	case isPlugin(pkg) && !sameTree(pluginOf(pkg), dep) && dep != "node/plugin" && dep != "node/tree/pattern" && !under(dep, "internal"):
		return "a plugin imports nothing of crayfish but node/plugin, node/tree/pattern and internal/ leaves"
	case under(pkg, "node/coord") && (under(dep, "node/worker") || under(dep, "node/tree") || under(dep, "node/hashcache")):
		return "the coordinator reaches nodes through wire.Worker only, never a node's disk"
	case under(pkg, "node/worker") && under(dep, "node/coord"):
		return "a node's worker does not import the coordinator: they share node/wire"
	case under(pkg, "node/wire") && (dep == "node" || under(dep, "node/coord") || under(dep, "node/worker")):
		return "node/wire is shared by coordinator and worker and imports neither"
	case under(pkg, "internal") && !sameTree(pkg, dep):
		return "internal/ packages are leaves"
	}
	return ""
}

// via names the direct import through which pkg reaches dep, when dep is
// not a direct import.
func via(p Package, dep string, pkgs []Package) string {
	if slices.Contains(p.Imports, dep) {
		return ""
	}
	for _, imp := range p.Imports {
		for _, q := range pkgs {
			if q.Path == imp && (slices.Contains(q.Deps, dep)) {
				return " (via " + imp + ")"
			}
		}
	}
	return ""
}

func isCore(pkg string) bool {
	if pkg == "node/plugin/plugintest" {
		return false
	}
	return under(pkg, "node") || under(pkg, "fsm") || under(pkg, "storage") || under(pkg, "transport")
}

func isPlugin(pkg string) bool { return pluginOf(pkg) != "" }

func pluginOf(pkg string) string {
	for _, p := range Plugins {
		if under(pkg, p) {
			return p
		}
	}
	return ""
}

// under reports whether pkg is dir or below it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

func sameTree(root, dep string) bool { return under(dep, root) }
