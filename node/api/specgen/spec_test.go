package specgen

import (
	"bytes"
	"context"
	"flag"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/crayfish-backup/crayfish/node/api"
)

var update = flag.Bool("update", false, "rewrite node/api/openapi.json")

// TestSpecUpToDate: the committed spec is what the table and the Go
// types generate; -update rewrites it.
func TestSpecUpToDate(t *testing.T) {
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("../openapi.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(b, api.OpenAPISpec) {
		t.Fatal("node/api/openapi.json is stale: run go test ./node/api/specgen -update")
	}
}

// TestSpecValid: the spec is valid OpenAPI 3 and names every route of
// the table.
func TestSpecValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPISpec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			n++
			_ = path + method
		}
	}
	if n != len(routes) || n < 25 {
		t.Fatalf("%d operations in the spec, %d routes in the table", n, len(routes))
	}
	for _, name := range []string{"Operation", "Step", "Schedule", "ErrorResponse", "ClusterStatus", "Manifest"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
}
