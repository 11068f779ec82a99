package coord

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// TestRemoteWorkerRestartsForgottenJobs: a node that answers 404 for a
// job (it restarted) gets the job again; progress is passed on; the
// result is decoded.
func TestRemoteWorkerRestartsForgottenJobs(t *testing.T) {
	var posts, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/internal/v1/jobs":
			var req wire.StepRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name != wire.StepSnapshot || req.Ref.Epoch != 7 {
				t.Errorf("request %+v %v", req, err)
			}
			posts.Add(1)
			json.NewEncoder(w).Encode(wire.JobStatus{State: wire.JobRunning, Progress: &fsm.Progress{FilesDone: 1}})
		case r.Method == http.MethodGet:
			if gets.Add(1) == 1 {
				w.WriteHeader(http.StatusNotFound) // forgot the job
				json.NewEncoder(w).Encode(map[string]string{"error": "no such job"})
				return
			}
			json.NewEncoder(w).Encode(wire.JobStatus{State: wire.JobDone, Result: json.RawMessage(`{"files":42}`), Progress: &fsm.Progress{FilesDone: 42}})
		}
	}))
	defer srv.Close()
	rw := &RemoteWorker{node: "n2", url: func() (string, error) { return srv.URL, nil }, peers: srv.Client(),
		timeout: time.Second, log: slog.New(slog.DiscardHandler)}
	var last fsm.Progress
	res, err := wire.Caller(rw.run).Snapshot(context.Background(), wire.StepRef{OpID: "op", Epoch: 7, Step: 1}, wire.SnapshotOptions{}, func(p fsm.Progress) { last = p })
	if err != nil || res.Files != 42 || last.FilesDone != 42 {
		t.Fatalf("result %+v progress %+v err %v", res, last, err)
	}
	if posts.Load() != 2 {
		t.Fatalf("%d starts, want 2 (the node forgot the job once)", posts.Load())
	}
}

// TestRemoteWorkerGivesUpOnDeadNode: a node that never answers fails the
// step for good after node_timeout; a stale epoch is reported as such.
func TestRemoteWorkerGivesUpOnDeadNode(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	rw := &RemoteWorker{node: "n3", url: func() (string, error) { return dead.URL, nil }, peers: http.DefaultClient,
		timeout: 300 * time.Millisecond, log: slog.New(slog.DiscardHandler)}
	start := time.Now()
	_, err := wire.Caller(rw.run).Upload(context.Background(), wire.StepRef{OpID: "op", Epoch: 1}, nil, nil)
	if !errors.Is(err, wire.ErrNodeUnreachable) || !wire.IsPermanent(err) {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("gave up before node_timeout")
	}
	stale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]string{"error": "epoch 1 < 5", "code": "stale_epoch"})
	}))
	defer stale.Close()
	rw.url = func() (string, error) { return stale.URL, nil }
	if err := wire.Caller(rw.run).Release(context.Background(), wire.StepRef{OpID: "op", Epoch: 1}); !errors.Is(err, wire.ErrStaleEpoch) {
		t.Fatalf("stale: %v", err)
	}
}
