package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestEventSettingsAreCheckedAtStart(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error; empty: no error
	}{
		{"JetStream is the default transport", nil, ""},
		{"an unknown transport is refused", map[string]string{"EVENTS_TRANSPORT": "kafka"}, `EVENTS_TRANSPORT: "kafka" is neither nats nor http`},
		{"HTTP without K_SINK is refused for the api", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "api"}, "K_SINK: required"},
		{"HTTP without K_SINK is refused for the runner", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "runner"}, "K_SINK: required"},
		{"HTTP without K_SINK is fine for the recorder, which sends nothing", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "recorder"}, ""},
		{"HTTP with K_SINK", map[string]string{"EVENTS_TRANSPORT": "http", "K_SINK": "http://broker-ingress.knative-eventing.svc/ns/default"}, ""},
		{"a short signing key is refused without being shown", map[string]string{"EVENTS_SIGNING_KEY": "s3cr3t-but-short"}, "EVENTS_SIGNING_KEY: shorter than 32 bytes"},
		{"a signing key of 32 bytes", map[string]string{"EVENTS_SIGNING_KEY": key}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig([]string{"x"}, func(k string) string { return tt.env[k] })
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Errorf("the error shows the key: %v", err)
			}
			if tt.env["EVENTS_SIGNING_KEY"] == key {
				if string(c.Bus.SigningKey) != key || string(c.Sink.SigningKey) != key {
					t.Errorf("the key does not reach both transports: %q %q", c.Bus.SigningKey, c.Sink.SigningKey)
				}
			}
		})
	}
}

func TestOverHTTPEachRequeueAttemptReachesTheSinkOnceHoweverManyReapersSendIt(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[e.ID()]++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(broker.Close)
	js, err := jetstream.New(testenv.Conn(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	// Two runner processes, each with its bus and its sink.
	var reapers []mustgather.Events
	for range 2 {
		bus, err := natsbus.New(ctx, js, natsbus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		sink, err := httpevents.NewSink(httpevents.Config{Sink: broker.URL}, bus, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		reapers = append(reapers, journaled{bus: bus.WithSource(eventing.SourceReaper), sink: sink.WithSource(eventing.SourceReaper)})
	}
	g := mustgather.Gathering{ID: 3, CreatedAt: mustgather.Timestamp{Time: time.Now()}, Status: mustgather.StatusNew, Command: "true", Timeout: "1m"}
	var sent int
	for _, attempt := range []int{1, 1, 2, 2} {
		for _, r := range reapers {
			ok, err := r.Requeued(ctx, g, attempt)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				sent++
			}
		}
	}
	if sent != 2 {
		t.Errorf("Requeued reported %d sends, want 2 (one per attempt)", sent)
	}
	want := map[string]int{"gathering-3-requested-1": 1, "gathering-3-requested-2": 1}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events at the sink (-want +got):\n%s", diff)
	}
}
