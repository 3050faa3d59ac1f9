package httpevents_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/client"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

var key = []byte("the sink's test signing key, 32+ bytes")

// newBus returns a bus on a fresh embedded NATS, for dead letters.
func newBus(t *testing.T) (*natsbus.Bus, jetstream.JetStream) {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(context.Background(), js, natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return bus, js
}

func completed() mustgather.Update {
	return mustgather.Update{ID: 7, Seq: 3, Status: mustgather.StatusCompleted, Time: time.Now(), ArchiveName: "a.tar.gz", ArchiveSize: 1}
}

func TestTheSinkRetriesWhileTheReceiverIsDownAndDeliversOnceItIsUp(t *testing.T) {
	bus, _ := newBus(t)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	reg := prometheus.NewRegistry()
	sink, err := httpevents.NewSink(httpevents.Config{
		Sink: "http://" + addr + "/", Overrides: `{"extensions": {"mgfcluster": "test"}}`,
		RetryFor: 30 * time.Second, FirstBackOff: 20 * time.Millisecond, MaxBackOff: 100 * time.Millisecond, SigningKey: key,
	}, bus, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- sink.WithSource(eventing.SourceReaper).Updated(context.Background(), completed()) }()
	testenv.Eventually(t, 10*time.Second, "three failed attempts", func() bool {
		return testenv.Counter(t, reg, "mustgather_sink_retries_total") >= 3
	})

	// Now a real sdk-go receiver comes up on the sink's address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cehttp.New(cehttp.WithListener(ln))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(p)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan cloudevents.Event, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.StartReceiver(ctx, func(e cloudevents.Event) { got <- e })
	}()
	t.Cleanup(func() { cancel(); <-done })

	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("Updated: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the event was not delivered once the receiver was up")
	}
	e := <-got
	if e.ID() != "gathering-7-3-completed" || e.Source() != eventing.SourceReaper {
		t.Errorf("received %s from %s", e.ID(), e.Source())
	}
	if err := eventing.Verify(e, key); err != nil {
		t.Errorf("received event: %v", err)
	}
	if v := e.Extensions()["mgfcluster"]; v != "test" {
		t.Errorf("extension mgfcluster = %v, want test (K_CE_OVERRIDES)", v)
	}
	if n := testenv.Counter(t, reg, "mustgather_sink_events_total", "delivered"); n != 1 {
		t.Errorf("delivered %v, want 1", n)
	}
	if n := testenv.Counter(t, reg, "mustgather_sink_events_total", "dead_lettered"); n != 0 {
		t.Errorf("dead-lettered %v, want 0", n)
	}
}

func TestAnEventTheSinkCannotDeliverIsKeptAsADeadLetter(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such broker", http.StatusBadRequest)
	}))
	t.Cleanup(refusing.Close)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		sink       string
		retryFor   time.Duration
		minRetries float64
		maxRetries float64
		reason     string
	}{
		{"a sink that stays down beyond the retry budget", fmt.Sprintf("http://127.0.0.1:%d/", port), 500 * time.Millisecond, 2, 100, "connection refused"},
		{"a sink that refuses the event for good (400), without retries", refusing.URL, time.Minute, 0, 0, "no such broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus, js := newBus(t)
			reg := prometheus.NewRegistry()
			sink, err := httpevents.NewSink(httpevents.Config{
				Sink: tt.sink, RetryFor: tt.retryFor, FirstBackOff: 20 * time.Millisecond, MaxBackOff: 100 * time.Millisecond, SigningKey: key,
			}, bus, nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = sink.Updated(context.Background(), completed())
			if !errors.Is(err, httpevents.ErrDeadLettered) {
				t.Fatalf("Updated: %v, want ErrDeadLettered", err)
			}
			if took := time.Since(start); took > tt.retryFor+5*time.Second {
				t.Errorf("gave up after %s, retry budget %s", took, tt.retryFor)
			}
			if n := testenv.Counter(t, reg, "mustgather_sink_retries_total"); n < tt.minRetries || n > tt.maxRetries {
				t.Errorf("%v retries, want %v to %v", n, tt.minRetries, tt.maxRetries)
			}
			if n := testenv.Counter(t, reg, "mustgather_sink_events_total", "dead_lettered"); n != 1 {
				t.Errorf("dead-lettered %v, want 1", n)
			}
			// The record: the event as it was to be sent, with why.
			ctx := context.Background()
			c, err := js.OrderedConsumer(ctx, "MUST_GATHER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.DeadLetterSubject()}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatalf("no dead-letter record: %v", err)
			}
			e, err := natsbus.Decode(ctx, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err != nil {
				t.Fatal(err)
			}
			if e.ID() != "gathering-7-3-completed" {
				t.Errorf("dead letter %s", e.ID())
			}
			if err := eventing.Verify(e, key); err != nil {
				t.Errorf("dead letter: %v", err)
			}
			if why := m.Headers().Get(natsbus.DeadLetterReasonHeader); !strings.Contains(why, tt.reason) {
				t.Errorf("reason %q lacks %q", why, tt.reason)
			}
		})
	}
}
