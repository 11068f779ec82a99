package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/crayfish-backup/crayfish/node/api"
)

// loadSpec parses the committed spec, node/api/openapi.json, as the agent
// embeds and serves it.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPISpec)
	if err != nil {
		t.Fatalf("node/api/openapi.json does not load: %v", err)
	}
	return doc
}

// specRoutes lists the spec's operations as the server's route patterns
// ("POST /v1/backups").
func specRoutes(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// publicRoutes lists the public route patterns Handler registers: all
// but the /v1/ catch-all (any other path's 404) and the agents' internal
// calls under /internal/.
func publicRoutes(t *testing.T, s *Server) []string {
	t.Helper()
	var out []string
	for _, p := range s.routes {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "", p
		}
		switch {
		case p == "/v1/", strings.HasPrefix(path, "/internal/"):
			continue
		case method == "":
			t.Errorf("route %q is registered for every method: the spec cannot name it", p)
			continue
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIRoutesMatchSpec: every public route the server registers is
// an operation of the spec, and every operation of the spec is a route
// the server registers.
func TestOpenAPIRoutesMatchSpec(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	s.Handler()
	public := publicRoutes(t, s)
	spec := specRoutes(loadSpec(t))
	for _, p := range public {
		if !slices.Contains(spec, p) {
			t.Errorf("route %q is registered but not in the spec (add it to node/api/specgen's table, then go test ./node/api/specgen -update)", p)
		}
	}
	for _, p := range spec {
		if !slices.Contains(public, p) {
			t.Errorf("the spec has %q, which the server does not register", p)
		}
	}
	// Guard against the comparison passing on two empty sets: the routes
	// docs/api.md lists.
	if len(public) < 26 {
		t.Errorf("only %d public routes recorded: %v", len(public), public)
	}
	t.Logf("%d public routes, %d operations in the spec", len(public), len(spec))
}

// TestOpenAPISpecValid: the spec is valid OpenAPI 3 (kin-openapi), and
// every operation says what it answers: a 2xx with a JSON schema, and
// the error shape for everything else.
func TestOpenAPISpecValid(t *testing.T) {
	doc := loadSpec(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("node/api/openapi.json is not valid OpenAPI 3: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi %q, want 3.0.x", doc.OpenAPI)
	}
	errSchema := doc.Components.Schemas["ErrorResponse"]
	if errSchema == nil || errSchema.Value == nil {
		t.Fatal("no ErrorResponse schema")
	}
	for _, field := range []string{"error", "code"} {
		if !slices.Contains(errSchema.Value.Required, field) {
			t.Errorf("ErrorResponse does not require %q", field)
		}
	}
	if doc.Components.SecuritySchemes["bearer"] == nil {
		t.Error("no bearer security scheme")
	}
	jsonSchema := func(r *openapi3.ResponseRef) *openapi3.SchemaRef {
		if r == nil || r.Value == nil || r.Value.Content.Get("application/json") == nil {
			return nil
		}
		return r.Value.Content.Get("application/json").Schema
	}
	for _, route := range specRoutes(doc) {
		method, path, _ := strings.Cut(route, " ")
		op := doc.Paths.Find(path).GetOperation(method)
		if op.OperationID == "" || op.Summary == "" {
			t.Errorf("%s: no operationId or summary", route)
		}
		ok2xx := false
		for status, r := range op.Responses.Map() {
			switch {
			case status == "default" || status[0] == '4' || status[0] == '5':
				if sc := jsonSchema(r); sc == nil || sc.Value != errSchema.Value {
					t.Errorf("%s: answer %s is not an ErrorResponse", route, status)
				}
			case status[0] == '2':
				if jsonSchema(r) == nil {
					t.Errorf("%s: answer %s has no JSON schema", route, status)
				}
				ok2xx = true
			}
		}
		if !ok2xx {
			t.Errorf("%s: no 2xx answer", route)
		}
		if op.Responses.Default() == nil {
			t.Errorf("%s: no default (error) answer", route)
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the committed spec,
// byte for byte.
func TestOpenAPIServed(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !bytes.Equal(body, api.OpenAPISpec) {
		t.Fatalf("GET /v1/openapi.json: %d bytes, not the committed spec (%d bytes)", len(body), len(api.OpenAPISpec))
	}
}
