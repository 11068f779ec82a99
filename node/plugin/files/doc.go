// Package files is the plugin for plain directory trees: a backup takes
// the tree at the configured root (include/exclude, in place or
// hard-linked first), and a restore makes the root, or a requested target,
// equal to the backup, or to the part a selection (path globs) chooses.
//
// It owns the files configuration keys (root, include, exclude, in_place:
// no prefix, they predate plugins), the files restore planner (targets,
// the {node} placeholder, selections) and their checks. It imports the
// plugin seam and node/tree/pattern (the pattern language), nothing else
// of node: the download, the target guard and fencing stay the node's.
package files
