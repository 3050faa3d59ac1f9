package api

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TestBrokenOrStalledBodiesGet4xxAndLogNoError sends bodies that break
// off, are framed wrongly or stall, byte for byte over TCP as a broken or
// hostile client does. Each is the client's fault: it gets a 4xx with the
// API's JSON error, a stalled one as soon as the body timeout passes, and
// nothing is logged above debug, so that no client can fill the log.
func TestBrokenOrStalledBodiesGet4xxAndLogNoError(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 300 * time.Millisecond
	e := newEnv(t, func(e *env, d *Deps) {
		d.BodyTimeout = bodyTimeout
		d.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	_, router := loadOpenAPI(t)

	const post = "POST /must-gather HTTP/1.1\r\nHost: mgf\r\nContent-Type: application/json\r\n"
	const tenBytes = `{"image": `
	incomplete := errorBody{Field: "body", Error: "request body ended before it was complete"}
	stalled := errorBody{Error: "request body did not arrive in full within 300ms"}
	tests := []struct {
		name string
		send string
		// halfClose closes the client's sending side after send; otherwise
		// the client sends nothing more and waits for the answer.
		halfClose bool
		status    int
		want      errorBody
	}{
		{"a body shorter than its Content-Length, then a half-close",
			post + "Content-Length: 100\r\n\r\n" + tenBytes, true, 400, incomplete},
		{"a chunked body cut off before its last chunk, then a half-close",
			post + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", true, 400, incomplete},
		{"an invalid chunk size",
			post + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", false,
			400, errorBody{Field: "body", Error: "malformed request body: invalid byte in chunk length"}},
		{"a chunk longer than its size",
			post + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n", false,
			400, errorBody{Field: "body", Error: "malformed request body: malformed chunked encoding"}},
		{"a body that stalls after 10 of its 100 bytes",
			post + "Content-Length: 100\r\n\r\n" + tenBytes, false, 408, stalled},
		{"a chunked body that stalls after its first chunk",
			post + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", false, 408, stalled},
		{"a body that never starts",
			post + "Content-Length: 2\r\n\r\n", false, 408, stalled},
	}
	for _, tt := range tests {
		t.Run(tt.name+" answers "+http.StatusText(tt.status), func(t *testing.T) {
			resp, took := rawExchange(t, e.srv.Listener.Addr().String(), tt.send, tt.halfClose)
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			if diff := cmp.Diff(tt.want, errorOf(t, resp)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			// The answer comes from the body timeout, not from the server's
			// ReadTimeout, which is 10s longer.
			if tt.status == http.StatusRequestTimeout && (took < bodyTimeout || took > bodyTimeout+5*time.Second) {
				t.Errorf("answered after %s, want about the body timeout of %s", took, bodyTimeout)
			}
			validateCreateResponse(t, e, router, resp)
		})
	}
	log := e.log.String()
	for _, level := range []string{"level=ERROR", "level=WARN"} {
		if strings.Contains(log, level) {
			t.Errorf("logged at %s:\n%s", strings.TrimPrefix(level, "level="), log)
		}
	}
	if !strings.Contains(log, `level=DEBUG msg="request body not read"`) {
		t.Errorf("no debug line for the unread bodies:\n%s", log)
	}
	if list, err := e.store.List(context.Background(), mustgather.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("broken bodies stored %d gatherings (%v), want none", len(list), err)
	}
}

// rawExchange writes send to a new connection to addr, half-closes it if
// told to, and reads the one answer.
func rawExchange(t *testing.T, addr, send string, halfClose bool) (response, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, time.Since(start)
}

// validateCreateResponse checks resp against what the document says
// POST /must-gather answers.
func validateCreateResponse(t *testing.T, e *env, router routers.Router, resp response) {
	t.Helper()
	req := e.request(http.MethodPost, "/must-gather", "application/json", nil)
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: authOff}
	if err := validateResponse(in, resp); err != nil {
		t.Errorf("answer does not match the document: %v", err)
	}
}
