package forward

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestForwardPassesRequestAndAnswer(t *testing.T) {
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(Header) != "n2" || r.Header.Get("Authorization") != "Bearer t" {
			t.Errorf("headers at leader: %v", r.Header)
		}
		w.Header().Set("X-Answer", "yes")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
	}))
	defer leader.Close()
	f := &Forwarder{NodeID: "n2", OnError: func(w http.ResponseWriter, r *http.Request, err error) { t.Errorf("OnError: %v", err) }}
	req := httptest.NewRequest(http.MethodPost, "/v1/backups?x=1", strings.NewReader(`{"id":"a"}`))
	req.Header.Set("Authorization", "Bearer t")
	rec := httptest.NewRecorder()
	f.Forward(rec, req, leader.URL)
	if rec.Code != http.StatusAccepted || rec.Header().Get("X-Answer") != "yes" || rec.Body.String() != `POST /v1/backups?x=1 {"id":"a"}` {
		t.Fatalf("answer %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
}

func TestForwardRefusesLoopsAndReportsDeadLeader(t *testing.T) {
	var got error
	f := &Forwarder{NodeID: "n2", OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		w.WriteHeader(http.StatusServiceUnavailable)
	}}
	req := httptest.NewRequest(http.MethodPost, "/v1/backups", nil)
	req.Header.Set(Header, "n3")
	f.Forward(httptest.NewRecorder(), req, "http://127.0.0.1:1")
	if !errors.Is(got, ErrLoop) {
		t.Fatalf("loop: %v", got)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	got = nil
	rec := httptest.NewRecorder()
	f.Forward(rec, httptest.NewRequest(http.MethodPost, "/v1/backups", nil), dead.URL)
	if got == nil || rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("dead leader: %v %d", got, rec.Code)
	}
}
