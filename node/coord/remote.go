package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// RemoteWorker performs steps on another node through its internal API.
// A step is a job on the node: the worker starts (or re-attaches to) it
// and polls until it ends, so a coordinator that dies mid-step leaves the
// job running for the next coordinator to find. An unreachable node is
// retried until node_timeout has passed since it last answered.
// wire.Caller(r.run) is its Worker (NewRemoteWorker).
type RemoteWorker struct {
	node    string
	url     func() (string, error) // the node's base URL, looked up per call
	peers   Doer
	timeout time.Duration
	log     *slog.Logger
}

// NewRemoteWorker returns the worker of node, reached at the base URL
// url returns (looked up per call) through peers; a node that does not
// answer for timeout fails its step.
func NewRemoteWorker(node string, url func() (string, error), peers Doer, timeout time.Duration, log *slog.Logger) wire.Worker {
	r := &RemoteWorker{node: node, url: url, peers: peers, timeout: timeout, log: log}
	return wire.Caller(r.run)
}

// pollWait is how long one status poll waits on the node.
const pollWait = 5 * time.Second

func (r *RemoteWorker) run(ctx context.Context, req wire.StepRequest, progress wire.ProgressFunc, out any) error {
	lastContact := time.Now()
	// last is the node's latest progress; while the node does not answer
	// it is reported again with the reason, so status says why the step
	// waits and until when.
	var last fsm.Progress
	report := func(p fsm.Progress) {
		last = p
		if progress != nil {
			progress(p)
		}
	}
	contact := func() {
		lastContact = time.Now()
		if last.Waiting != "" {
			last.Waiting = ""
			report(last)
		}
	}
	unreachable := func(err error) error {
		if time.Since(lastContact) > r.timeout {
			return wire.Permanent(fmt.Errorf("%w: %s did not answer for %s: %v", wire.ErrNodeUnreachable, r.node, r.timeout, err))
		}
		if time.Since(lastContact) > time.Second {
			w := last
			w.Waiting = fmt.Sprintf("waiting for %s: unreachable since %s, gives up at %s (%v)", r.node,
				lastContact.UTC().Format(time.RFC3339), lastContact.Add(r.timeout).UTC().Format(time.RFC3339), err)
			report(w)
		}
		r.log.Debug("node not answering; retrying", "node", r.node, "err", err)
		if wait.Sleep(ctx, 500*time.Millisecond) != nil {
			return ctx.Err()
		}
		return nil
	}
	// noAnswer reports whether a call got no usable answer (after waiting
	// a little, or with the error that ends the step).
	noAnswer := func(code int, err error) (bool, error) {
		if err == nil && code != 0 && code < 500 {
			return false, nil
		}
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d", code)
		}
		return true, unreachable(err)
	}
	for {
		var st wire.JobStatus
		code, err := r.call(ctx, http.MethodPost, "/internal/v1/jobs", req, &st)
		if retry, err := noAnswer(code, err); retry {
			if err != nil {
				return err
			}
			continue
		}
		contact()
		if err := statusError(code, st); err != nil {
			return err
		}
		for st.State == wire.JobRunning {
			if st.Progress != nil {
				report(*st.Progress)
			}
			q := url.Values{"epoch": {strconv.FormatUint(req.Ref.Epoch, 10)}, "wait": {pollWait.String()}}
			path := "/internal/v1/jobs/" + url.PathEscape(req.Ref.OpID) + "/" + strconv.Itoa(req.Ref.Step) + "?" + q.Encode()
			code, err = r.call(ctx, http.MethodGet, path, nil, &st)
			if retry, err := noAnswer(code, err); retry {
				if err != nil {
					return err
				}
				break // start (or find) the job again
			}
			contact()
			if code == http.StatusNotFound {
				break // the node restarted and forgot the job: start it again
			}
			if err := statusError(code, st); err != nil {
				return err
			}
		}
		switch st.State {
		case wire.JobDone:
			if st.Progress != nil {
				report(*st.Progress)
			}
			if err := json.Unmarshal(st.Result, out); err != nil {
				return fmt.Errorf("result of %s on %s: %w", req.Name, r.node, err)
			}
			return nil
		case wire.JobFailed:
			err := fmt.Errorf("on node %s: %s", r.node, st.Error)
			if st.Damaged {
				// The failure still reports what was damaged.
				_ = json.Unmarshal(st.Result, out)
				err = wire.MarkDamaged(err)
			}
			if st.Permanent {
				return wire.Permanent(err)
			}
			return err
		}
	}
}

// statusError turns an error answer into our error kinds.
func statusError(code int, st wire.JobStatus) error {
	switch code {
	case http.StatusOK, http.StatusNotFound:
		return nil
	case http.StatusConflict:
		return fmt.Errorf("%w: %s", wire.ErrStaleEpoch, st.Error)
	case http.StatusBadRequest:
		return wire.Permanent(fmt.Errorf("%w: %s", wire.ErrBadRequest, st.Error))
	case http.StatusRequestEntityTooLarge:
		// The same request would be refused again.
		return wire.Permanent(fmt.Errorf("%w: %s", wire.ErrBodyTooLarge, st.Error))
	}
	return fmt.Errorf("HTTP %d: %s", code, st.Error)
}

// call sends body as JSON and decodes the answer into out. A transport
// error returns code 0.
func (r *RemoteWorker) call(ctx context.Context, method, path string, body, out any) (int, error) {
	base, err := r.url()
	if err != nil {
		return 0, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	cctx, cancel := context.WithTimeout(ctx, pollWait+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, method, base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.peers.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if st, ok := out.(*wire.JobStatus); ok {
			st.Error = e.Error
		}
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return resp.StatusCode, nil
}
