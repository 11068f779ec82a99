// Package wallclock is the agent's wall clock: the time the coordinator
// stamps into replicated commands (operation and step times, backup ids)
// and the fence journal's admission times.
//
// In normal builds Now is time.Now. Go programs do not read the time
// through libc, so libfaketime cannot skew them; instead, a build with the
// chaosfaults tag (the chaos harness's agent) adds an offset read from the
// file named by the environment variable CRAYFISH_CLOCK_OFFSET_FILE: a Go
// duration such as "-90m" or "2h15m" (a missing, empty or unparsable file
// is no offset). The file is re-read at most every 100 ms, so the harness
// skews and heals a running agent's clock by rewriting it.
//
// Only wall-time readings go through Now. Deadlines, timeouts and
// durations use time.Now's monotonic reading and are not skewed, as they
// are not by a real clock step either.
package wallclock
