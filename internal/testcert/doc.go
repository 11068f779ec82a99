// Package testcert issues throwaway certificates for tests: a CA made
// per test, and certificates for loopback addresses that serve as both
// server and client certificates.
//
// It is a test helper, imported by tests only, and a leaf: it imports
// nothing of crayfish.
package testcert
