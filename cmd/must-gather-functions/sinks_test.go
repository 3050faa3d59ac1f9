package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestASubscriberGetsTheSignedCompletionOfAGathering(t *testing.T) {
	r := sinkstest.New(t, nil)
	s := start(t, t.TempDir(), map[string]string{"NOTIFIER_SINKS": r.URL, "NOTIFIER_SINK_SECRET": "subscriber-key"})
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo hello", "custom-name": "subscribed"}`))
	testenv.Eventually(t, 60*time.Second, "the completed event at the subscriber", func() bool { return len(r.Deliveries()) > 0 })
	d := r.Deliveries()[0]
	if d.Event.Type() != eventing.TypeCompleted || d.Event.Subject() != fmt.Sprint(g.ID) {
		t.Errorf("event %s of %s, want %s of %d", d.Event.Type(), d.Event.Subject(), eventing.TypeCompleted, g.ID)
	}
	if err := sinks.Verify([]byte("subscriber-key"), d.Header.Get(sinks.SignatureHeader), d.Header.Get("Ce-Id"), d.Event.Data(), 0, time.Now()); err != nil {
		t.Errorf("signature: %v", err)
	}
	var data struct {
		gathering
		Download string `json:"download"`
	}
	if err := json.Unmarshal(d.Event.Data(), &data); err != nil {
		t.Fatal(err)
	}
	got, _ := s.get(t, fmt.Sprint(g.ID))
	if data.gathering != got || data.Download != fmt.Sprintf("/must-gather/%d/data", g.ID) {
		t.Errorf("data %+v, want the API's %+v and its download path", data, got)
	}
}

func TestSinksThatAreNotHTTPURLsAreRefused(t *testing.T) {
	_, err := loadConfig([]string{"x"}, func(k string) string {
		return map[string]string{"NOTIFIER_SINKS": "https://ok.example/hook, mailto:ops@example.com"}[k]
	})
	if want := "NOTIFIER_SINKS: entry 2 (mailto:) is not an absolute http or https URL"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("loadConfig: %v, want %q", err, want)
	}
}

func TestSinkSettingsThatCannotWorkStopTheStart(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a CA file that is not there", map[string]string{"NOTIFIER_SINK_CA_FILE": "/nonexistent/ca.crt"}, "NOTIFIER_SINK_CA_FILE: bad sink CA file"},
		{"presigned URLs from the local store without the API's public URL", map[string]string{"NOTIFIER_SINK_PRESIGNED": "true"},
			"NOTIFIER_SINK_PRESIGNED: with the local archive store, download links for subscribers need API_PUBLIC_URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"PORT": "0", "NATS_EMBEDDED_PORT": "-1", "DATA_DIR": t.TempDir(), "LOG_LEVEL": "error",
				"NOTIFIER_SINKS": "https://sink.example/hook",
			}
			maps.Copy(env, tt.env)
			err := run(context.Background(), []string{"x"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOverHTTPASubscriberGetsTheCompletionATriggerDeliversToTheNotifier(t *testing.T) {
	const key = "a signing key of 32 bytes or more for the e2e"
	broker, sink := newTestBroker(t)
	r := sinkstest.New(t, nil)
	s := start(t, t.TempDir(), map[string]string{
		"EVENTS_TRANSPORT": "http", "K_SINK": sink, "EVENTS_SIGNING_KEY": key, "NOTIFIER_SINKS": r.URL,
	})
	// One process runs every function: the final events go to the
	// recorder and then to the notifier.
	broker.route(s.base+"/", append([]string{eventing.TypeRequested}, eventing.StatusTypes...)...)
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo over http"}`))
	testenv.Eventually(t, 60*time.Second, "the completed event at the subscriber", func() bool { return len(r.Deliveries()) > 0 })
	if d := r.Deliveries()[0]; d.Event.Type() != eventing.TypeCompleted || d.Event.Subject() != fmt.Sprint(g.ID) {
		t.Errorf("got %s of %s, want %s of %d", d.Event.Type(), d.Event.Subject(), eventing.TypeCompleted, g.ID)
	}
	if got, _ := s.get(t, fmt.Sprint(g.ID)); got.Status != "completed" {
		t.Errorf("the gathering is %s", got.Status)
	}

	// A forged completion of it, signed with another key, reaches no
	// subscriber.
	forged, err := eventing.NewStatus(mustgather.Update{ID: mustgather.ID(g.ID), Seq: 999, Status: mustgather.StatusCompleted, Time: time.Now()}, eventing.SourceRunner)
	if err != nil {
		t.Fatal(err)
	}
	eventing.Sign(&forged, []byte("not the key, though 32 bytes long"))
	if code := testenv.DeliverEvent(t, s.base+"/", forged, testenv.Binary); code != http.StatusOK {
		t.Errorf("forged completion answered %d, want 200", code)
	}
	if n := len(r.Deliveries()); n != 1 {
		t.Errorf("%d deliveries after a forged completion, want 1", n)
	}
}
