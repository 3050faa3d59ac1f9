package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// events opens an event stream of the system and returns its frames.
func (s *system) events(t *testing.T, path string) <-chan testenv.SSEFrame {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	frames := make(chan testenv.SSEFrame, 1024)
	go func() {
		_ = testenv.ReadSSE(resp.Body, frames)
		close(frames)
	}()
	return frames
}

// nextStatus returns the gathering of the next event in frames, or false
// when the stream ends.
func nextStatus(t *testing.T, frames <-chan testenv.SSEFrame) (gathering, bool) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return gathering{}, false
			}
			if !f.IsEvent() {
				continue
			}
			var g gathering
			if err := json.Unmarshal([]byte(f.Data), &g); err != nil {
				t.Fatalf("event %s: %v", f.Data, err)
			}
			return g, true
		case <-timeout:
			t.Fatal("no event within 60s")
		}
	}
}

func TestAGatheringsEventStreamFollowsItToCompletedAndEnds(t *testing.T) {
	s := start(t, t.TempDir(), map[string]string{"NOTIFIER_HEARTBEAT": "100ms"})
	all := s.events(t, "/events")
	if f := <-all; len(f.Comments) != 1 || f.Comments[0] != "connected" {
		t.Fatalf("stream starts with %+v", f)
	}
	g := s.post(t, "application/json", strings.NewReader(`{"custom-name": "live", "command": "echo started; sleep 1; echo gathered > out.txt", "timeout": "1m"}`))
	one := s.events(t, "/must-gather/live/events")
	var statuses []string
	for {
		u, ok := nextStatus(t, one)
		if !ok {
			break
		}
		if u.ID != g.ID {
			t.Fatalf("event of gathering %d on the stream of %d", u.ID, g.ID)
		}
		if n := len(statuses); n == 0 || statuses[n-1] != u.Status {
			statuses = append(statuses, u.Status)
		}
	}
	if got := strings.Join(statuses, " "); got != "new inprogress completed" && got != "inprogress completed" && got != "completed" {
		t.Errorf("statuses %q, want them in order up to completed", got)
	}
	if g := s.waitEnded(t, g.ID); g.Status != "completed" {
		t.Fatalf("gathering %s", g.Status)
	}
	// The stream of all gatherings saw it start and end too.
	var seen []string
	for !strings.HasSuffix(strings.Join(seen, " "), "completed") {
		u, ok := nextStatus(t, all)
		if !ok {
			t.Fatalf("/events ended after %v", seen)
		}
		seen = append(seen, u.Status)
	}
	if seen[0] != "new" {
		t.Errorf("/events opened before the POST saw %v, want new first", seen)
	}
}

func TestANotifierProcessOfItsOwnStreamsWhatAnotherProcessRecords(t *testing.T) {
	s := start(t, t.TempDir(), map[string]string{"FUNCTIONS": "api,runner,recorder"})
	resp, err := http.Get(s.base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /events of a process without the notifier: %d, want 404", resp.StatusCode)
	}
	n := start(t, t.TempDir(), map[string]string{
		"FUNCTIONS": "notifier", "NATS_URL": s.natsURL, "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off",
	})
	all := n.events(t, "/events")
	if f := <-all; len(f.Comments) != 1 || f.Comments[0] != "connected" {
		t.Fatalf("stream starts with %+v", f)
	}
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo gathered > out.txt", "timeout": "1m"}`))
	for {
		u, ok := nextStatus(t, all)
		if !ok {
			t.Fatal("/events ended")
		}
		if u.ID == g.ID && u.Status == "completed" {
			break
		}
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/must-gather": 404} {
		resp, err := http.Get(n.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s of the notifier process: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
