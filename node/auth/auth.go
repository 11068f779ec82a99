package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unicode"

	"github.com/crayfish-backup/crayfish/node/api"
)

// MinTokenLength is the shortest token LoadTokens accepts: 16 characters
// of a random token are far beyond online guessing, and the limit catches
// a placeholder or truncated file.
const MinTokenLength = 16

// Error codes of the middleware's answers, in api.ErrorResponse.Code.
const (
	CodeUnauthorized = "unauthorized" // 401: no token, or an unknown one
	CodeForbidden    = "forbidden"    // 403: a read token on a write
)

// Role is what a request's token allows; roles are ordered, a higher one
// includes the lower.
type Role int

// The roles, in increasing power.
const (
	RoleNone  Role = iota // no or unknown token
	RoleRead              // GET and HEAD
	RoleAdmin             // every method
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleRead:
		return "read"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Tokens holds the configured tokens; the zero value means auth is off and
// every request is allowed. Only SHA-256 digests are kept: comparing
// fixed-size digests takes the same time whatever the presented token's
// length, which subtle.ConstantTimeCompare on the raw tokens would leak.
type Tokens struct {
	read, admin *[sha256.Size]byte
	// adminToken is kept for the agent's own calls to its peers, which
	// present the admin token.
	adminToken string
}

// AdminToken returns the admin token ("" if none): nodes present it to
// each other.
func (t Tokens) AdminToken() string { return t.adminToken }

// LoadTokens reads token files. Each holds one token; surrounding
// whitespace (the trailing newline of `echo`) is trimmed, and it must be
// at least MinTokenLength characters with no inner whitespace. readFile or
// adminFile may be "" for no token of that role; both "" turns auth off.
// An admin token also grants read.
func LoadTokens(readFile, adminFile string) (Tokens, error) {
	var t Tokens
	var readTok, adminTok string
	var err error
	if readFile != "" {
		if readTok, err = loadToken("read", readFile); err != nil {
			return Tokens{}, err
		}
		d := sha256.Sum256([]byte(readTok))
		t.read = &d
	}
	if adminFile != "" {
		if adminTok, err = loadToken("admin", adminFile); err != nil {
			return Tokens{}, err
		}
		d := sha256.Sum256([]byte(adminTok))
		t.admin = &d
		t.adminToken = adminTok
	}
	if readTok != "" && readTok == adminTok {
		// Otherwise the read token would silently be an admin token.
		return Tokens{}, fmt.Errorf("read token file %s and admin token file %s hold the same token", readFile, adminFile)
	}
	return t, nil
}

func loadToken(role, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s token: %w", role, err)
	}
	tok := strings.TrimSpace(string(b))
	if strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", fmt.Errorf("%s token file %s: holds more than one token (whitespace inside)", role, path)
	}
	if n := len([]rune(tok)); n < MinTokenLength {
		return "", fmt.Errorf("%s token file %s: token has %d characters, need at least %d", role, path, n, MinTokenLength)
	}
	return tok, nil
}

// Enabled reports whether any token is configured.
func (t Tokens) Enabled() bool { return t.read != nil || t.admin != nil }

// RoleOf returns the role granted by the request's "Authorization: Bearer
// X" header (scheme case-insensitive, as RFC 7235 says). Every configured
// token is compared, in constant time, whatever matches first, so the
// answer's timing tells nothing about which token came close.
func (t Tokens) RoleOf(r *http.Request) Role {
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return RoleNone
	}
	d := sha256.Sum256([]byte(tok))
	isRead := t.read != nil && subtle.ConstantTimeCompare(d[:], t.read[:]) == 1
	isAdmin := t.admin != nil && subtle.ConstantTimeCompare(d[:], t.admin[:]) == 1
	switch {
	case isAdmin:
		return RoleAdmin
	case isRead:
		return RoleRead
	}
	return RoleNone
}

// bearer extracts the token of a "Bearer X" header value.
func bearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}

// Middleware guards next when tokens are configured: GET and HEAD need
// RoleRead, every other method RoleAdmin, and paths for which public
// returns true (health checks, metrics scrapers without credentials) pass
// untouched; public may be nil. Refusals are JSON like every API error:
// 401 with a WWW-Authenticate challenge for a missing or unknown token,
// 403 for a read token on a write. With auth off, next is returned as is.
func (t Tokens) Middleware(next http.Handler, public func(path string) bool) http.Handler {
	if !t.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public != nil && public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		need := RoleAdmin
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			need = RoleRead
		}
		switch have := t.RoleOf(r); {
		case have >= need:
			next.ServeHTTP(w, r)
		case have == RoleNone:
			w.Header().Set("WWW-Authenticate", `Bearer realm="crayfish"`)
			refuse(w, http.StatusUnauthorized, CodeUnauthorized, "missing or unknown bearer token")
		default:
			refuse(w, http.StatusForbidden, CodeForbidden, fmt.Sprintf("%s %s needs an admin token", r.Method, r.URL.Path))
		}
	})
}

// refuse writes an API error body, formatted like the agent's own.
func refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(api.ErrorResponse{Error: msg, Code: code})
}
