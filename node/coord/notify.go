package coord

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// Completion is the JSON body a webhook receives when an operation ends.
type Completion struct {
	Event       string      `json:"event"` // "operation.finished"
	ID          string      `json:"id"`
	Kind        fsm.OpKind  `json:"kind"`
	State       fsm.OpState `json:"state"`
	Error       string      `json:"error,omitempty"`
	BackupID    string      `json:"backup_id,omitempty"`
	StartedAt   time.Time   `json:"started_at"`
	FinishedAt  time.Time   `json:"finished_at"`
	DurationSec float64     `json:"duration_seconds"`
	// Files and Bytes: what a backup took, what a restore or drill wrote.
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Webhook headers. The delivery id is the operation id: a receiver that
// gets a completion twice (a leader died after delivering, before
// recording it) can tell.
const (
	HeaderEvent     = "X-Crayfish-Event"
	HeaderDelivery  = "X-Crayfish-Delivery"
	HeaderSignature = "X-Crayfish-Signature" // "sha256=" + hex HMAC-SHA256 of the body
)

// NotifyOptions configure completion webhooks.
type NotifyOptions struct {
	// URLs receive every operation's completion (besides its own
	// callback_url).
	URLs []string
	// Secret, when set, signs each body (HeaderSignature).
	Secret []byte
	// Client sends the POSTs (nil: a client with a 10 s timeout).
	Client *http.Client
	// Attempts per URL (0: 8) and the first retry's delay (0: 1 s),
	// doubling up to 60 s.
	Attempts  int
	FirstWait time.Duration
	// MaxAge: completions older than this when a leader finds them
	// undelivered are dropped (0: 24 h): a new agent version replaying an
	// old log must not flood the receivers.
	MaxAge time.Duration
}

// Notifier delivers completions while this node leads. Delivery runs
// beside the operations and never holds them up; each finished
// operation is marked in the replicated state once delivered (or given
// up), so a new leader delivers what its predecessor did not.
type Notifier struct {
	o   NotifyOptions
	e   *Engine
	log *slog.Logger
}

// NewNotifier returns the notifier of engine e.
func NewNotifier(e *Engine, o NotifyOptions) *Notifier {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.FirstWait <= 0 {
		o.FirstWait = time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	return &Notifier{o: o, e: e, log: e.log.With("component", "notify")}
}

// Run delivers until ctx ends (Engine.WhileLeading).
func (n *Notifier) Run(ctx context.Context, epoch uint64) {
	var (
		mu       sync.Mutex
		inFlight = map[string]bool{}
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	m := n.e.store.FSM()
	for {
		changed := m.Changed()
		for _, op := range m.Unnotified() {
			mu.Lock()
			busy := inFlight[op.ID]
			inFlight[op.ID] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(inFlight, op.ID)
					mu.Unlock()
				}()
				n.deliver(ctx, epoch, op)
			})
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
		if wait.Sleep(ctx, 100*time.Millisecond) != nil { // batch bursts of changes
			return
		}
	}
}

// deliver sends op's completion to each of its URLs, then records it.
func (n *Notifier) deliver(ctx context.Context, epoch uint64, op *fsm.Operation) {
	urls := n.o.URLs
	if op.Params.CallbackURL != "" {
		urls = append([]string{op.Params.CallbackURL}, urls...)
	}
	var failed []string
	switch {
	case len(urls) == 0:
	case op.FinishedAt != nil && n.e.now().Sub(*op.FinishedAt) > n.o.MaxAge:
		failed = append(failed, fmt.Sprintf("not delivered: finished more than %s ago", n.o.MaxAge))
	default:
		body, err := json.Marshal(completionOf(op))
		if err != nil {
			failed = append(failed, err.Error())
			break
		}
		for _, u := range urls {
			if err := n.post(ctx, u, op.ID, body); err != nil {
				if ctx.Err() != nil {
					return // the next leader delivers
				}
				n.log.Error("webhook given up", "op", op.ID, "url", u, "err", err)
				failed = append(failed, fmt.Sprintf("%s: %v", u, err))
			}
		}
	}
	cmd := fsm.Command{Type: fsm.CmdNotified, OpID: op.ID, Epoch: epoch, Error: strings.Join(failed, "; ")}
	if _, err := n.e.apply(ctx, cmd); err != nil && ctx.Err() == nil && !errors.Is(err, fsm.ErrStaleEpoch) {
		n.log.Warn("recording delivery", "op", op.ID, "err", err)
	}
}

// post delivers body to u, retrying with backoff; a 2xx answer is
// delivery, a 4xx other than 408 and 429 a refusal not worth retrying.
func (n *Notifier) post(ctx context.Context, u, opID string, body []byte) error {
	delay := n.o.FirstWait
	var err error
	for attempt := 1; ; attempt++ {
		var retry bool
		if retry, err = n.postOnce(ctx, u, opID, body); err == nil {
			n.log.Info("webhook delivered", "op", opID, "url", u, "attempt", attempt)
			return nil
		}
		if !retry || attempt >= n.o.Attempts {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		n.log.Warn("webhook failed; retrying", "op", opID, "url", u, "attempt", attempt, "err", err, "in", delay)
		if wait.Sleep(ctx, delay) != nil {
			return ctx.Err()
		}
		delay = min(2*delay, time.Minute)
	}
}

func (n *Notifier) postOnce(ctx context.Context, u, opID string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "crayfish")
	req.Header.Set(HeaderEvent, "operation.finished")
	req.Header.Set(HeaderDelivery, opID)
	if len(n.o.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(n.o.Secret, body))
	}
	resp, err := n.o.Client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	return retry, fmt.Errorf("HTTP %s", resp.Status)
}

// Sign is the signature header's value for body: "sha256=" and the hex
// HMAC-SHA256 under secret. Receivers compare it in constant time.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// completionOf is op's webhook body.
func completionOf(op *fsm.Operation) Completion {
	c := Completion{Event: "operation.finished", ID: op.ID, Kind: op.Kind, State: op.State, Error: op.Error,
		BackupID: op.BackupID, StartedAt: op.CreatedAt}
	if op.FinishedAt != nil {
		c.FinishedAt = *op.FinishedAt
		c.DurationSec = op.FinishedAt.Sub(op.CreatedAt).Seconds()
	}
	for _, st := range op.Steps {
		if st.State != fsm.StepDone || len(st.Result) == 0 {
			continue
		}
		switch st.Name {
		case wire.StepManifest:
			var r ManifestResult
			if json.Unmarshal(st.Result, &r) == nil {
				c.Files, c.Bytes = r.Files, r.Bytes
			}
		case wire.StepRestore, wire.StepDrill:
			var r wire.RestoreResult
			if json.Unmarshal(st.Result, &r) == nil {
				c.Files += r.Files
				c.Bytes += r.DownloadedBytes + r.KeptBytes
			}
		}
	}
	return c
}
