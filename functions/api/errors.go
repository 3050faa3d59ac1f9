package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
	// Field names the request field, query parameter or header at fault.
	Field string `json:"field,omitempty"`
	// Status is the gathering's status when its archive cannot be had yet.
	Status mustgather.Status `json:"status,omitempty"`
}

// mediaTypeError is a request body of a media type the API does not read.
type mediaTypeError struct{ got string }

func (e *mediaTypeError) Error() string {
	want := mediaJSON + ", " + mediaForm + " or " + mediaMultipart
	if e.got == "" {
		return "a request body needs a Content-Type: " + want
	}
	return fmt.Sprintf("unsupported Content-Type %q; send %s", e.got, want)
}

// notCompletedError is mustgather.ErrNotCompleted with the status the
// gathering is in, which the client gets to see.
type notCompletedError struct {
	g    mustgather.Gathering
	hint string
}

func (e *notCompletedError) Error() string {
	return fmt.Sprintf("gathering %d is %s, not completed%s", e.g.ID, e.g.Status, e.hint)
}

func (e *notCompletedError) Unwrap() error { return mustgather.ErrNotCompleted }

// bodyError is a request body that could not be read: cut off before its
// end, framed wrongly (a bad chunk), or not in full within the body
// timeout. Only the client, or its connection, causes one.
type bodyError struct {
	err     error
	timeout time.Duration
}

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// answer is the status and body that tell the client what went wrong
// without echoing the server's view of the connection.
func (e *bodyError) answer() (int, errorBody) {
	switch {
	case errors.Is(e.err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, errorBody{Error: fmt.Sprintf("request body did not arrive in full within %s", e.timeout)}
	case errors.Is(e.err, io.ErrUnexpectedEOF), errors.As(e.err, new(*net.OpError)):
		return http.StatusBadRequest, errorBody{Field: "body", Error: "request body ended before it was complete"}
	}
	return http.StatusBadRequest, errorBody{Field: "body", Error: "malformed request body: " + e.err.Error()}
}

// contentError is an error answer that http.ServeContent chose for an
// archive download: the status it wrote and what the request asked for.
type contentError struct {
	status int
	id     mustgather.ID
	rng    string // the Range header
	size   int64  // the archive's size
	text   string // what ServeContent would have written as text/plain
}

func (e *contentError) Error() string {
	return fmt.Sprintf("serve archive of gathering %d: %d %s", e.id, e.status, e.text)
}

// BusyError is a request refused because the server is at a limit of its
// own, such as the number of open event streams; it is answered 503 with
// Retry-After.
type BusyError struct {
	What       string // what is at its limit, for the client to read
	RetryAfter time.Duration
}

func (e *BusyError) Error() string { return e.What + "; try again later" }

// httpError maps an error to the HTTP status and body the client gets. It
// is the only place that knows which error means which status.
func httpError(err error) (int, errorBody) {
	if be, ok := errors.AsType[*bodyError](err); ok {
		return be.answer()
	}
	if fe, ok := errors.AsType[*mustgather.FieldError](err); ok {
		return http.StatusBadRequest, errorBody{Error: fe.Message, Field: fe.Field}
	}
	if mte, ok := errors.AsType[*mediaTypeError](err); ok {
		return http.StatusUnsupportedMediaType, errorBody{Error: mte.Error(), Field: "Content-Type"}
	}
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	}
	if rle, ok := errors.AsType[*rateLimitError](err); ok {
		return http.StatusTooManyRequests, errorBody{Error: rle.Error()}
	}
	if be, ok := errors.AsType[*BusyError](err); ok {
		return http.StatusServiceUnavailable, errorBody{Error: be.Error()}
	}
	if ee, ok := errors.AsType[*endedError](err); ok {
		return http.StatusConflict, errorBody{Error: ee.Error(), Status: ee.g.Status}
	}
	if pe, ok := errors.AsType[*preconditionError](err); ok {
		return http.StatusPreconditionFailed, errorBody{Error: pe.Error(), Field: "If-Match", Status: pe.g.Status}
	}
	if nce, ok := errors.AsType[*notCompletedError](err); ok {
		return http.StatusConflict, errorBody{Error: nce.Error(), Status: nce.g.Status}
	}
	if ce, ok := errors.AsType[*contentError](err); ok {
		switch ce.status {
		case http.StatusRequestedRangeNotSatisfiable:
			return ce.status, errorBody{Error: fmt.Sprintf("range %q cannot be satisfied: the archive has %d bytes", clip(ce.rng), ce.size)}
		case http.StatusPreconditionFailed:
			return ce.status, errorBody{Error: "the archive does not meet the request's preconditions (If-Match, If-Unmodified-Since)"}
		}
		// Anything else (a seek that failed) is the server's.
	}
	switch {
	case errors.Is(err, mustgather.ErrUnauthenticated):
		return http.StatusUnauthorized, errorBody{Error: err.Error()}
	case errors.Is(err, mustgather.ErrForbidden):
		return http.StatusForbidden, errorBody{Error: err.Error()}
	case errors.Is(err, mustgather.ErrAuthUnavailable):
		// The cause (an API server that does not answer) is the server's
		// to log, not the client's to read.
		return http.StatusServiceUnavailable, errorBody{Error: "authorization is unavailable: the cluster's API server did not answer; try again later"}
	case errors.Is(err, mustgather.ErrInvalid):
		return http.StatusBadRequest, errorBody{Error: err.Error()}
	case errors.Is(err, mustgather.ErrNotFound):
		return http.StatusNotFound, errorBody{Error: err.Error()}
	case errors.Is(err, mustgather.ErrNotCompleted):
		return http.StatusConflict, errorBody{Error: err.Error()}
	}
	return http.StatusInternalServerError, errorBody{Error: "internal error; the server log has the details"}
}

// respondErr answers r with err, logging the errors that are the server's
// fault. A body that could not be read is the client's, and any client can
// cause one at will: it is logged at debug only, and the connection, its
// framing broken, is closed.
func respondErr(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := httpError(err)
	if _, busy := errors.AsType[*BusyError](err); status >= 500 && !busy {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	if rle, ok := errors.AsType[*rateLimitError](err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(rle.seconds()))
	}
	if be, ok := errors.AsType[*BusyError](err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((be.RetryAfter+time.Second-1)/time.Second))))
	}
	if _, ok := errors.AsType[*bodyError](err); ok {
		log.DebugContext(r.Context(), "request body not read", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "status", status, "err", err)
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, body)
}
