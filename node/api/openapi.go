package api

import _ "embed"

// OpenAPISpec is the OpenAPI 3 description of the public API, served at
// GET /v1/openapi.json. The file is the source of truth kept in the
// repository; a test checks it names every route the server registers.
//
//go:embed openapi.json
var OpenAPISpec []byte
