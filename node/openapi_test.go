package node

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/api/specgen"
)

// TestOpenAPIRoutesMatchSpec: every public route the server registers is
// in the spec, and every route of the spec is registered.
func TestOpenAPIRoutesMatchSpec(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	h := s.Handler()
	var public []string
	for _, p := range s.routes {
		if strings.HasPrefix(p, "/internal/") || strings.Contains(p, " /internal/") || p == "/v1/" {
			continue
		}
		public = append(public, p)
	}
	slices.Sort(public)
	spec := specgen.Routes()
	for _, p := range public {
		if !slices.Contains(spec, p) {
			t.Errorf("route %q is not in the spec (node/api/specgen)", p)
		}
	}
	for _, p := range spec {
		if !slices.Contains(public, p) {
			t.Errorf("the spec has %q, which the server does not register", p)
		}
	}
	if len(public) < 25 {
		t.Fatalf("only %d public routes recorded", len(public))
	}
	// The spec is served as committed.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/openapi.json", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !bytes.Equal(body, api.OpenAPISpec) || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d, %d bytes, %q", rec.Code, len(body), rec.Header().Get("Content-Type"))
	}
}
