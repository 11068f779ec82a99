// Package wait owns the one context-aware sleep of the module: a pause
// that ends early, with the context's error, when the context ends.
//
// It is a leaf: it imports only the standard library and must not import
// any package of this module, so that storage, node and every plugin can
// use it without a cycle. Retry policies, backoff and jitter belong to
// the callers, not here.
package wait
