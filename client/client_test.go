package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestClient(t *testing.T, h http.Handler, opts ...Option) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/prefix/", append([]Option{WithPollInterval(time.Millisecond, 5*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestErrorAnswersMapToTypedErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		header     map[string]string
		want       error
		field      string
		state      Status
		retryAfter time.Duration
	}{
		{"404 is ErrNotFound", 404, `{"error":"no gathering has id or custom-name \"x\""}`, nil, ErrNotFound, "", "", 0},
		{"409 is ErrConflict with the gathering's status", 409, `{"error":"gathering 3 is inprogress, not completed","status":"inprogress"}`, nil, ErrConflict, "", StatusInProgress, 0},
		{"400 is ErrInvalid with the field", 400, `{"error":"must be at most 1h","field":"timeout"}`, nil, ErrInvalid, "timeout", "", 0},
		{"415 is ErrInvalid", 415, `{"error":"unsupported Content-Type","field":"Content-Type"}`, nil, ErrInvalid, "Content-Type", "", 0},
		{"401 is ErrUnauthorized", 401, `{"error":"unauthenticated"}`, nil, ErrUnauthorized, "", "", 0},
		{"403 is ErrForbidden", 403, `{"error":"forbidden"}`, nil, ErrForbidden, "", "", 0},
		{"429 is ErrRateLimited with Retry-After", 429, `{"error":"too many"}`, map[string]string{"Retry-After": "7"}, ErrRateLimited, "", "", 7 * time.Second},
		{"503 is ErrUnavailable", 503, `{"error":"authorization is unavailable"}`, map[string]string{"Retry-After": "3"}, ErrUnavailable, "", "", 3 * time.Second},
		{"a proxy's 502 in plain text is ErrUnavailable", 502, "bad gateway\n", nil, ErrUnavailable, "", "", 0},
		{"412 is ErrChanged", 412, `{"error":"If-Match \"3\" is not the gathering's revision","field":"If-Match","status":"completed"}`, nil, ErrChanged, "If-Match", StatusCompleted, 0},
	}
	kinds := []error{ErrNotFound, ErrConflict, ErrUnauthorized, ErrForbidden, ErrInvalid, ErrRateLimited, ErrUnavailable, ErrChanged}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			_, err := c.Get(context.Background(), "x")
			for _, k := range kinds {
				if got := errors.Is(err, k); got != (k == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, k, got)
				}
			}
			ae, ok := errors.AsType[*APIError](err)
			if !ok {
				t.Fatalf("%v is not an *APIError", err)
			}
			if ae.StatusCode != tt.status || ae.Field != tt.field || ae.Status != tt.state || ae.RetryAfter != tt.retryAfter || ae.Message == "" {
				t.Errorf("got %+v", ae)
			}
			if ae.Path != "/prefix/must-gather/x" {
				t.Errorf("path %q", ae.Path)
			}
		})
	}
}

func TestEventsAreParsedAsTheStandardReadsThem(t *testing.T) {
	in := "retry: 3000\r\n: connected\r\n\r\nid: 1\nevent: gathering\ndata: {\"a\":\ndata: 1}\n\n: heartbeat\n\nid: 2\ndata:x\n\nid: 3\nevent: gathering\ndata: cut off"
	var got []event
	if err := readEvents(strings.NewReader(in), func(e event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []event{{id: "1", name: "gathering", data: "{\"a\":\n1}"}, {id: "2", name: "message", data: "x"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// sse writes gathering events with the given statuses, ids from first.
func sse(w http.ResponseWriter, first int, statuses ...Status) {
	w.Header().Set("Content-Type", "text/event-stream")
	_, _ = io.WriteString(w, "retry: 3000\n: connected\n\n")
	for i, s := range statuses {
		fmt.Fprintf(w, "id: %d\nevent: gathering\ndata: {\"id\":7,\"status\":%q,\"updated-at\":\"2026-01-01T00:00:%02dZ\"}\n\n", first+i, s, first+i)
	}
}

func TestWaitFollowsTheEventStreamAndResumesItWhereItBroke(t *testing.T) {
	var streams atomic.Int32
	lastIDs := make(chan string, 4)
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/prefix/must-gather/name":
			_, _ = io.WriteString(w, `{"id":7,"status":"new"}`)
		case "/prefix/must-gather/7/events":
			lastIDs <- r.Header.Get("Last-Event-ID")
			if streams.Add(1) == 1 {
				sse(w, 10, StatusNew, StatusInProgress) // then breaks off
				return
			}
			sse(w, 12, StatusInProgress, StatusCompleted, StatusInProgress)
		default:
			http.NotFound(w, r)
		}
	}))
	var seen []Status
	g, err := c.Wait(context.Background(), "name", WaitOptions{Progress: func(g *Gathering) { seen = append(seen, g.Status) }})
	if err != nil || g.Status != StatusCompleted || g.ID != 7 {
		t.Fatalf("got %+v, %v", g, err)
	}
	if fmt.Sprint(seen) != "[new inprogress inprogress completed]" {
		t.Errorf("progress saw %v", seen)
	}
	if a, b := <-lastIDs, <-lastIDs; a != "" || b != "11" {
		t.Errorf("Last-Event-ID %q then %q", a, b)
	}
}

func TestWaitPollsAServerWithoutAnEventStream(t *testing.T) {
	var gets atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/must-gather/7" {
			http.NotFound(w, r)
			return
		}
		switch n := gets.Add(1); {
		case n == 3:
			w.WriteHeader(http.StatusServiceUnavailable) // passing
		case n < 5:
			fmt.Fprintf(w, `{"id":7,"status":"inprogress","updated-at":"2026-01-01T00:00:%02dZ"}`, n)
		default:
			_, _ = io.WriteString(w, `{"id":7,"status":"error"}`)
		}
	}))
	g, err := c.Wait(context.Background(), "7", WaitOptions{})
	if err != nil || g.Status != StatusError {
		t.Fatalf("got %+v, %v", g, err)
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"id":7,"status":"inprogress"}`)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(ctx, "7", WaitOptions{Poll: true}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestRequestsCarryTheTokenAndEscapeTheRef(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.EscapedPath() != "/prefix/must-gather/plan:a%2Fb%20c" {
			t.Errorf("got %s %q", r.URL.EscapedPath(), r.Header.Get("Authorization"))
		}
		_, _ = io.WriteString(w, `{"id":1}`)
	}), WithToken("tok"))
	if _, err := c.Get(context.Background(), "plan:a/b c"); err != nil {
		t.Fatal(err)
	}
}

func TestAForwardedTokenGoesInItsOwnHeader(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-Access-Token") != "tok" || r.Header.Get("Authorization") != "" {
			t.Errorf("got headers %v", r.Header)
		}
		_, _ = io.WriteString(w, `[]`)
	}), WithForwardedToken("tok"))
	if _, err := c.List(context.Background(), ListOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesABaseURLWithoutSchemeOrHost(t *testing.T) {
	for _, u := range []string{"localhost:8080", "ftp://x", "http://", "::"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) took it", u)
		}
	}
}

func TestListSendsTheCursorAndPagesWalkIt(t *testing.T) {
	var queries []string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		// Ids 1 to 5, two a page, as the API pages them.
		var page []string
		after := r.URL.Query().Get("after")
		for id := 1; id <= 5 && len(page) < 2; id++ {
			if fmt.Sprint(id) > after {
				page = append(page, fmt.Sprintf(`{"id":%d}`, id))
			}
		}
		_, _ = io.WriteString(w, "["+strings.Join(page, ",")+"]")
	}))
	ctx := context.Background()
	if _, err := c.List(ctx, ListOptions{Limit: 2, Paged: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx, ListOptions{After: 3, Status: StatusNew}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for page, err := range c.Pages(ctx, ListOptions{CustomName: "p"}, 2) {
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page {
			ids = append(ids, g.ID)
		}
	}
	want := []string{"after=0&limit=2", "after=3&status=new",
		"after=0&custom-name=p&limit=2", "after=2&custom-name=p&limit=2", "after=4&custom-name=p&limit=2"}
	if fmt.Sprint(queries) != fmt.Sprint(want) || fmt.Sprint(ids) != "[1 2 3 4 5]" {
		t.Errorf("queries %q, ids %v; want %q and 1 to 5", queries, ids, want)
	}
}
