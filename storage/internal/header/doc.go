// Package header owns the one builder of the plaintext headers and the
// additional authenticated data (AAD) of format v1's sealed objects: pack
// files, index segments, snapshots, gc/plan, damage records and wrapped
// master keys. docs/repository-format.md ("Additional authenticated
// data" and each object's layout) describes the bytes; they must never
// change for v1, and header_test.go in each owning package pins them.
//
// It is a leaf under storage: it imports only the standard library, and
// must not import storage or its subpackages (pack, index and crypto use
// it). Magics and AAD tags stay with the packages that own the objects;
// validating a header read back, and the errors that reports, stay there
// too.
package header
