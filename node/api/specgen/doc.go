// Package specgen generates node/api/openapi.json, the OpenAPI 3 spec of
// the public API: the routes are a table here (method, path, parameters,
// body and answer types), the schemas are derived by reflection from the
// Go types the server encodes and decodes (JSON names, omitempty, nested
// and embedded structs), so they cannot drift from the code. A test
// regenerates the spec and fails when the committed file differs
// (go test ./node/api/specgen -update rewrites it); node's tests check
// that the spec's operations and the server's routes are the same set.
//
// It owns the spec's content only: it serves nothing and is not linked
// into the agent.
package specgen
