package natsbus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func newBus(t *testing.T) (*natsbus.Bus, jetstream.JetStream, natsbus.Config) {
	t.Helper()
	nc := testenv.Conn(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsbus.Config{Stream: "EVENTS", SubjectPrefix: "mg"}
	bus, err := natsbus.New(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return bus, js, cfg
}

func gathering(id mustgather.ID) mustgather.Gathering {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	return mustgather.Gathering{
		ID: id, CreatedAt: mustgather.Timestamp{Time: at}, UpdatedAt: mustgather.Timestamp{Time: at},
		CustomName: "plan:mig-plan-cold", Status: mustgather.StatusNew,
		Image: "quay.io/kubev2v/forklift-must-gather:latest", Command: "PLAN=mig-plan-cold NS=openshift-mtv /usr/bin/targeted",
		Timeout: "10m",
	}
}

func TestPublishedEventsAreReadableByAnIndependentCloudEventsReader(t *testing.T) {
	bus, js, _ := newBus(t)
	ctx := context.Background()
	g := gathering(7)
	if err := bus.Requested(ctx, g); err != nil {
		t.Fatal(err)
	}
	// Read the raw message straight from the stream, without natsbus.
	raw, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := raw.GetLastMsgForSubject(ctx, "mg.requested")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Content-Type"); got != cloudevents.ApplicationCloudEventsJSON {
		t.Errorf("Content-Type = %q, want %q", got, cloudevents.ApplicationCloudEventsJSON)
	}
	if got, want := m.Header.Get(jetstream.MsgIDHeader), "gathering-7-requested"; got != want {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, want)
	}
	var e event.Event
	if err := e.UnmarshalJSON(m.Data); err != nil {
		t.Fatalf("independent decode: %v\n%s", err, m.Data)
	}
	if e.SpecVersion() != "1.0" || e.Type() != eventing.TypeRequested || e.Subject() != "7" || e.ID() != "gathering-7-requested" || e.Source() != eventing.SourceAPI {
		t.Errorf("attributes: %s", e.String())
	}
	var back mustgather.Gathering
	if err := e.DataAs(&back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, back); diff != "" {
		t.Errorf("data (-sent +read):\n%s", diff)
	}
}

func TestARetriedPublishIsStoredOnce(t *testing.T) {
	bus, js, _ := newBus(t)
	ctx := context.Background()
	u := mustgather.Update{ID: 3, Seq: 2, Status: mustgather.StatusInProgress, Time: time.Now().UTC(), ExecOutput: "line\n"}
	for range 3 {
		if err := bus.Updated(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestConsumerAcknowledgesRetriesAndDrops(t *testing.T) {
	bus, js, _ := newBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan error, 1)
	go func() {
		done <- bus.Consume(ctx, natsbus.ConsumerConfig{
			Durable: "test", Filter: bus.AllStatusSubjects(), Concurrency: 4,
			BackOff: []time.Duration{10 * time.Millisecond},
		}, func(ctx context.Context, e cloudevents.Event) error {
			mu.Lock()
			calls[e.Subject()]++
			n := calls[e.Subject()]
			mu.Unlock()
			if e.Subject() == "2" && n < 3 {
				return errors.New("transient")
			}
			if _, err := eventing.ParseStatus(e); err != nil {
				return err
			}
			return nil
		})
	}()

	now := time.Now().UTC()
	for _, id := range []mustgather.ID{1, 2} {
		if err := bus.Updated(ctx, mustgather.Update{ID: id, Seq: 1, Status: mustgather.StatusInProgress, Time: now}); err != nil {
			t.Fatal(err)
		}
	}
	// A status event whose subject does not match its data is malformed.
	bad, _ := eventing.NewStatus(mustgather.Update{ID: 4, Seq: 1, Status: mustgather.StatusInProgress, Time: now}, eventing.SourceRunner)
	bad.SetSubject("5")
	if err := bus.Publish(ctx, bus.StatusSubject(4), bad); err != nil {
		t.Fatal(err)
	}
	// Not an event at all.
	if _, err := js.Publish(ctx, bus.StatusSubject(6), []byte("not json")); err != nil {
		t.Fatal(err)
	}

	// Consume creates the consumer in its own goroutine: look it up afresh.
	testenv.Eventually(t, 20*time.Second, "all events handled and acknowledged", func() bool {
		cons, err := js.Consumer(ctx, "EVENTS", "test")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false
		}
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Consumer >= 4
	})
	mu.Lock()
	got := map[string]int{"1": calls["1"], "2": calls["2"], "5": calls["5"]}
	mu.Unlock()
	want := map[string]int{"1": 1, "2": 3, "5": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handler calls per subject (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return after cancel")
	}
}

func TestALongHandlerIsNotRedeliveredWhileItWorks(t *testing.T) {
	bus, _, _ := newBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	release := make(chan struct{})
	handled := make(chan struct{})
	go func() {
		_ = bus.Consume(ctx, natsbus.ConsumerConfig{Durable: "slow", Filter: bus.RequestedSubject(), AckWait: 300 * time.Millisecond},
			func(ctx context.Context, e cloudevents.Event) error {
				calls.Add(1)
				<-release
				close(handled)
				return nil
			})
	}()
	if err := bus.Requested(ctx, gathering(1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the handler to start", func() bool { return calls.Load() == 1 })
	// Hold the handler for many ack waits; InProgress must keep the message.
	time.Sleep(1500 * time.Millisecond)
	close(release)
	<-handled
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

// openBus opens the test stream on a connection of its own to srv, as
// another process would.
func openBus(ctx context.Context, t *testing.T, srv *natsserver.Server) *natsbus.Bus {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(ctx, js, natsbus.Config{Stream: "EVENTS", SubjectPrefix: "mg"})
	if err != nil {
		t.Fatal(err)
	}
	return bus
}

func TestEventsADeadProcessHeldDoNotHoldUpTheOthers(t *testing.T) {
	srv := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *natsbus.Bus { return openBus(ctx, t, srv) }
	// The consumer's AckWait is far longer than the test waits below, so
	// only events nobody holds can reach the live process in time.
	cfg := natsbus.ConsumerConfig{Durable: "runner", Filter: "mg.requested", Concurrency: 4, AckWait: time.Minute}

	// A process takes as many events as it may handle and dies holding
	// them: its connection closes with none acknowledged.
	deadNC := testenv.Conn(t, srv)
	deadJS, err := jetstream.New(deadNC)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := natsbus.New(ctx, deadJS, natsbus.Config{Stream: "EVENTS", SubjectPrefix: "mg"})
	if err != nil {
		t.Fatal(err)
	}
	// Every process has its stream set up before any consumes: nats-server
	// races (under -race) between a stream update and a consumer create.
	pub := open()
	var held atomic.Int32
	stuck := make(chan struct{})
	deadCtx, stopDead := context.WithCancel(ctx)
	deadDone := make(chan struct{})
	defer func() { close(stuck); <-deadDone }()
	go func() {
		defer close(deadDone)
		_ = dead.Consume(deadCtx, cfg, func(ctx context.Context, e cloudevents.Event) error {
			held.Add(1)
			<-stuck
			return nil
		})
	}()
	for id := range mustgather.ID(4) {
		if err := pub.Requested(ctx, gathering(id+1)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, "the process to hold 4 events", func() bool { return held.Load() == 4 })
	deadNC.Close()
	stopDead()

	// A live process gets new events at once.
	live := open()
	got := make(chan string, 8)
	go func() {
		_ = live.Consume(ctx, cfg, func(ctx context.Context, e cloudevents.Event) error {
			got <- e.Subject()
			return nil
		})
	}()
	if err := pub.Requested(ctx, gathering(5)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "5" {
			t.Errorf("live process got gathering %s first, want 5", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a new event waited behind the events a dead process held")
	}
}

func TestAProcessHoldsNoMoreEventsThanItHandlesSoTheRestGoToTheOthers(t *testing.T) {
	srv := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *natsbus.Bus { return openBus(ctx, t, srv) }
	// Only events nobody holds can reach the second process in time.
	cfg := natsbus.ConsumerConfig{Durable: "runner", Filter: "mg.requested", AckWait: time.Minute}
	pub := open()
	for id := range mustgather.ID(6) {
		if err := pub.Requested(ctx, gathering(id+1)); err != nil {
			t.Fatal(err)
		}
	}

	// A busy process: two handlers that do not return until the test ends.
	var held atomic.Int32
	stuck := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stuck); cancel(); wg.Wait() }()
	busy, free := cfg, cfg
	busy.Concurrency, free.Concurrency = 2, 8
	busyBus, freeBus := open(), open()
	wg.Go(func() {
		_ = busyBus.Consume(ctx, busy, func(ctx context.Context, e cloudevents.Event) error {
			held.Add(1)
			<-stuck
			return nil
		})
	})
	testenv.Eventually(t, 20*time.Second, "the busy process to handle 2 events", func() bool { return held.Load() == 2 })

	var mu sync.Mutex
	got := map[string]bool{}
	wg.Go(func() {
		_ = freeBus.Consume(ctx, free, func(ctx context.Context, e cloudevents.Event) error {
			mu.Lock()
			got[e.Subject()] = true
			mu.Unlock()
			return nil
		})
	})
	testenv.Eventually(t, 20*time.Second, "the free process to get the 4 events the busy one does not handle", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4
	})
	if n := held.Load(); n != 2 {
		t.Errorf("the busy process handled %d events, want 2", n)
	}
}

func TestAProcessThatStopsHandsItsEventsBackAtOnce(t *testing.T) {
	srv := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Far longer than the test waits: only an event handed back reaches
	// the other process in time.
	cfg := natsbus.ConsumerConfig{Durable: "notifier", Filter: "mg.requested", Concurrency: 8, AckWait: time.Minute}
	pub, stopping := openBus(ctx, t, srv), openBus(ctx, t, srv)
	var held atomic.Int32
	stopCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = stopping.Consume(stopCtx, cfg, func(ctx context.Context, e cloudevents.Event) error {
			held.Add(1)
			<-ctx.Done() // works until the process stops, then gives up
			return ctx.Err()
		})
	}()
	if err := pub.Requested(ctx, gathering(1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the process to hold the event", func() bool { return held.Load() == 1 })
	stop()
	<-stopped

	got := make(chan string, 1)
	go func() {
		_ = openBus(ctx, t, srv).Consume(ctx, cfg, func(ctx context.Context, e cloudevents.Event) error {
			got <- e.Subject()
			return nil
		})
	}()
	select {
	case s := <-got:
		if s != "1" {
			t.Errorf("got gathering %s, want 1", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event a stopped process gave back waited for its ack wait")
	}
}
