package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

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

// httpError maps an error to the HTTP status and body the client gets. It
// is the only place that knows which error means which status.
func httpError(err error) (int, errorBody) {
	if fe, ok := errors.AsType[*mustgather.FieldError](err); ok {
		return http.StatusBadRequest, errorBody{Error: fe.Message, Field: fe.Field}
	}
	if mte, ok := errors.AsType[*mediaTypeError](err); ok {
		return http.StatusUnsupportedMediaType, errorBody{Error: mte.Error(), Field: "Content-Type"}
	}
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	}
	if nce, ok := errors.AsType[*notCompletedError](err); ok {
		return http.StatusConflict, errorBody{Error: nce.Error(), Status: nce.g.Status}
	}
	switch {
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
// fault.
func respondErr(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := httpError(err)
	if status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}
