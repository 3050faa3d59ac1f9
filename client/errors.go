package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The kinds of error the API answers; an *APIError matches one of them with
// errors.Is.
var (
	// ErrNotFound: no gathering has that id or custom-name, or its archive
	// is gone (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the gathering has no archive to give yet, or ended in
	// error (409); APIError.Status tells its state.
	ErrConflict = errors.New("not completed")
	// ErrUnauthorized: no token, or one the cluster does not know (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token's user may not do this, or a download link
	// that does not verify or has expired (403).
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: the request was refused as it was (400, 413, 415);
	// APIError.Field names the field at fault when the API named one.
	ErrInvalid = errors.New("invalid request")
	// ErrRateLimited: too many gatherings started by this user lately
	// (429); APIError.RetryAfter says when to try again.
	ErrRateLimited = errors.New("rate limited")
	// ErrChanged: the gathering changed since the caller read it, so an
	// If-Match failed (412).
	ErrChanged = errors.New("changed since it was read")
	// ErrNotEnded is returned by Delete for a gathering that has not
	// ended; Cancel it first.
	ErrNotEnded = errors.New("gathering has not ended")
	// ErrUnavailable: the service, or the cluster it asks about
	// authorization, cannot answer now (502, 503, 504); try again later.
	ErrUnavailable = errors.New("unavailable")
)

// APIError is an error answer of the API.
type APIError struct {
	Method, Path string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the API's "error", or the start of a body that was not
	// the API's JSON (a proxy's answer).
	Message string
	// Field is the request field, query parameter or header at fault.
	Field string
	// Status is the gathering's state, for ErrConflict.
	Status Status
	// RetryAfter is the wait the server asked for, if it asked.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, e.Field, e.Message)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Message)
}

// Is matches e against the kind of error its status means.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrInvalid:
		switch e.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusRequestedRangeNotSatisfiable:
			return true
		}
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrChanged:
		return e.StatusCode == http.StatusPreconditionFailed
	case ErrUnavailable:
		switch e.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// readError turns an error answer into an *APIError.
func readError(req *http.Request, resp *http.Response) error {
	e := &APIError{Method: req.Method, Path: req.URL.Path, StatusCode: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error  string `json:"error"`
		Field  string `json:"field"`
		Status Status `json:"status"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Message, e.Field, e.Status = body.Error, body.Field, body.Status
	} else {
		e.Message = strings.TrimSpace(string(raw))
		if len(e.Message) > 512 {
			e.Message = e.Message[:512] + "…"
		}
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	return e
}
