package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/crayfish-backup/crayfish/node/api"
)

// APIError is a non-2xx answer of the agent.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the api.Code* value of the answer; when the body carried
	// none it is derived from Status (400, 404, 500) or left empty.
	Code string
	// Message is the human-readable error text.
	Message string
	// RunningOperationID is the operation holding the cluster, with
	// Code api.CodeBusy.
	RunningOperationID string
}

// Error returns the message and, for busy, the running operation.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code
	}
	if e.RunningOperationID != "" {
		msg += " (running operation: " + e.RunningOperationID + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrBusy) and the like match any *APIError with
// the same non-empty Code.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Code != "" && t.Code == e.Code
}

// Sentinels for errors.Is, matched on APIError.Code.
var (
	ErrBadRequest = &APIError{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "bad request"}
	ErrNotFound   = &APIError{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "not found"}
	ErrBusy       = &APIError{Status: http.StatusConflict, Code: api.CodeBusy, Message: "another operation is running"}
	ErrConflict   = &APIError{Status: http.StatusConflict, Code: api.CodeConflict, Message: "operation id already used for a different request"}
	ErrNoLeader   = &APIError{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, Message: "no leader"}
	ErrInternal   = &APIError{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error"}
)

// IsTransient reports whether err is worth retrying with the same
// request after a pause: 502/503/504 answers (503 is no_leader), refused
// or reset connections, connections closed mid-answer, and per-call
// timeouts. Cancellation (context.Canceled) is not transient. Requests
// that start operations are safe to retry only with an explicit id.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
