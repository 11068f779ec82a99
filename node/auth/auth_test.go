package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/api"
)

const (
	readToken  = "read-token-0123456789abcdef"
	adminToken = "admin-token-0123456789abcdef"
)

func writeToken(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadBoth(t *testing.T) Tokens {
	t.Helper()
	tok, err := LoadTokens(writeToken(t, "read", "  "+readToken+"\n"), writeToken(t, "admin", adminToken+"\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func request(method, path, token string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
})

func isPublic(path string) bool { return path == "/healthz" }

func TestMiddleware(t *testing.T) {
	h := loadBoth(t).Middleware(ok, isPublic)
	wrongSameLength := strings.Repeat("x", len(adminToken))
	tests := []struct {
		name, method, path, token string
		status                    int
		code                      string
	}{
		{"no token", "GET", "/v1/backups", "", 401, CodeUnauthorized},
		{"no token write", "POST", "/v1/backups", "", 401, CodeUnauthorized},
		{"read GET", "GET", "/v1/backups", readToken, 200, ""},
		{"read HEAD", "HEAD", "/v1/backups", readToken, 200, ""},
		{"read POST", "POST", "/v1/backups", readToken, 403, CodeForbidden},
		{"read DELETE", "DELETE", "/v1/backups/x", readToken, 403, CodeForbidden},
		{"admin GET", "GET", "/v1/backups", adminToken, 200, ""},
		{"admin POST", "POST", "/v1/backups", adminToken, 200, ""},
		{"wrong token same length", "GET", "/v1/backups", wrongSameLength, 401, CodeUnauthorized},
		{"admin token prefix", "GET", "/v1/backups", adminToken[:len(adminToken)-1], 401, CodeUnauthorized},
		{"public path", "GET", "/healthz", "", 200, ""},
		{"public path write", "POST", "/healthz", "", 200, ""},
		{"public path wrong token", "GET", "/healthz", wrongSameLength, 200, ""},
		{"not quite public", "GET", "/healthz/x", "", 401, CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, request(tt.method, tt.path, tt.token))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status == 401 {
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate %q", got)
				}
			} else if got := rec.Header().Get("WWW-Authenticate"); got != "" {
				t.Errorf("WWW-Authenticate %q on %d", got, rec.Code)
			}
			if tt.code == "" {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body api.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Code != tt.code || body.Error == "" {
				t.Errorf("body %+v, want code %q", body, tt.code)
			}
			if strings.Contains(rec.Body.String(), tt.token) && tt.token != "" {
				t.Error("body echoes the token")
			}
		})
	}
}

func TestRoleOf(t *testing.T) {
	tok := loadBoth(t)
	for _, tt := range []struct {
		header string
		want   Role
	}{
		{"", RoleNone},
		{"Bearer " + readToken, RoleRead},
		{"Bearer " + adminToken, RoleAdmin},
		{"bearer " + adminToken, RoleAdmin},
		{"BEARER   " + readToken + " ", RoleRead},
		{"Basic " + adminToken, RoleNone},
		{adminToken, RoleNone},
		{"Bearer", RoleNone},
		{"Bearer ", RoleNone},
		{"Bearer " + readToken + "x", RoleNone},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		if got := tok.RoleOf(r); got != tt.want {
			t.Errorf("%q: role %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestAuthOff(t *testing.T) {
	tok, err := LoadTokens("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []Tokens{tok, {}} {
		if tk.Enabled() {
			t.Fatal("enabled without tokens")
		}
		h := tk.Middleware(ok, nil)
		for _, m := range []string{"GET", "POST", "DELETE"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, request(m, "/v1/backups", ""))
			if rec.Code != 200 {
				t.Errorf("%s with auth off: %d", m, rec.Code)
			}
		}
	}
}

// TestOneRole: with only a read token nobody may write; with only an
// admin token, the admin token reads too.
func TestOneRole(t *testing.T) {
	readOnly, err := LoadTokens(writeToken(t, "r", readToken), "")
	if err != nil {
		t.Fatal(err)
	}
	adminOnly, err := LoadTokens("", writeToken(t, "a", adminToken))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tok           Tokens
		method, token string
		status        int
	}{
		{readOnly, "GET", readToken, 200},
		{readOnly, "POST", readToken, 403},
		{readOnly, "GET", adminToken, 401},
		{adminOnly, "GET", adminToken, 200},
		{adminOnly, "POST", adminToken, 200},
		{adminOnly, "GET", readToken, 401},
	} {
		rec := httptest.NewRecorder()
		tt.tok.Middleware(ok, nil).ServeHTTP(rec, request(tt.method, "/v1/operations", tt.token))
		if rec.Code != tt.status {
			t.Errorf("%s with %q: %d, want %d", tt.method, tt.token, rec.Code, tt.status)
		}
	}
}

func TestLoadTokensErrors(t *testing.T) {
	short := writeToken(t, "short", "  short-token\n")
	good := writeToken(t, "good", readToken)
	twoLines := writeToken(t, "two", readToken+"\n"+adminToken+"\n")
	empty := writeToken(t, "empty", "\n")
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tt := range []struct {
		name          string
		read, admin   string
		wantInMessage string
	}{
		{"short read", short, "", short},
		{"short admin", "", short, short},
		{"empty", empty, "", empty},
		{"two tokens", twoLines, "", twoLines},
		{"missing", missing, "", missing},
		{"same token twice", good, good, "same token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := LoadTokens(tt.read, tt.admin)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantInMessage) {
				t.Errorf("error %q does not mention %q", err, tt.wantInMessage)
			}
			if tok.Enabled() {
				t.Error("tokens enabled despite the error")
			}
		})
	}
	// Exactly the minimum length is enough.
	if _, err := LoadTokens(writeToken(t, "min", strings.Repeat("k", MinTokenLength)+"\n"), ""); err != nil {
		t.Errorf("token of %d characters: %v", MinTokenLength, err)
	}
}

func TestRoleString(t *testing.T) {
	if RoleNone.String() != "none" || RoleRead.String() != "read" || RoleAdmin.String() != "admin" || Role(9).String() != "Role(9)" {
		t.Error("Role.String")
	}
}
