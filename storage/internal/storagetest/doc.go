// Package storagetest holds the test helpers that the tests of several
// storage packages (storage, pack, index) share: ciphers from fixed keys,
// seeded random bytes, and the check of a checked-in fuzz seed corpus.
//
// Only _test.go files may import it. It imports crypto, the standard
// library and testing, and must not import storage, pack or index (their
// tests import it). Helpers of a single package's tests stay in that
// package's helpers_test.go.
package storagetest
