// Package schedule computes when a schedule's slots fall and what the
// coordinator does about each: wait, fire it, or give it up under the
// schedule's missed-run policy. It is pure given a clock reading: it
// parses cron expressions and time zones, and derives the operation id
// and the jitter of a slot from the schedule's name and the slot alone,
// so every leader that looks at the same replicated state decides the
// same thing. It does not start operations or touch the Raft log (the
// coordinator's scheduler does) and reads no clock of its own.
package schedule
