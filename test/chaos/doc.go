// Package chaos is a Jepsen-style harness for crayfish: it starts a real
// multi-process cluster on 127.0.0.x addresses inside a private network
// namespace, lets writers change every node's tree, runs concurrent
// clients against random nodes while a seeded nemesis kills, pauses and
// partitions agents, records every call as invoke/ok/fail/info, and then
// checks the history and the final state: no acknowledged backup lost,
// every acknowledged backup restorable to what its nodes held, operation
// states linearizable (porcupine), node jobs mutually exclusive, fencing
// monotone, the repository intact after garbage collection, and the
// cluster live after healing. docs/reliability.md says how to run it.
package chaos
