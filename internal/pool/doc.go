// Package pool owns the module's one bounded worker pool, Each: a thin
// layer over golang.org/x/sync/errgroup (SetLimit) that fixes the rules
// every caller wants and is easy to get wrong at each call site: stop
// handing out work once the context ends or a call failed, report the
// first failure rather than the cancellations it caused, and report the
// parent's end when nothing failed.
//
// It is a leaf: it imports only the standard library and errgroup, and
// must not import any package of this module. What the work is, how
// results are collected and how many workers to use belong to the callers.
package pool
