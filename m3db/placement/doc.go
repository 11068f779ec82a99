// Package placement rewrites a backed-up M3 placement for a restore onto
// new identities: every instance re-keyed and given its new id, endpoint,
// hostname, port, isolation group, zone and debug port; every shard's
// source_id remapped the same way; weights, shard states, cutover and
// cutoff times and fields crayfish does not model (newer M3's) kept as
// they were.
//
// It is pure: a placement and a mapping in, a new placement or an error
// naming the problem out. It must not talk to etcd or M3DB, touch files,
// or decide which node gets which identity (the plugin's restore planner
// does); it encodes nothing (m3db/m3pb does).
package placement
