package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// testBroker plays a Knative Broker with two Triggers: it takes events on
// POST / (the functions' K_SINK), answers 202 once it has them, and
// delivers each, in turn binary and structured, to the function its type
// is routed to, retrying with back-off until that answers 2xx (events of a
// type not routed yet wait). Like an at-least-once broker it delivers every
// requested event twice.
type testBroker struct {
	ctx    context.Context
	mu     sync.Mutex
	routes map[string][]string // event type → the URLs of its Triggers
	seen   map[string]int      // event type → events taken
	wg     sync.WaitGroup
}

func newTestBroker(t *testing.T) (*testBroker, string) {
	ctx, cancel := context.WithCancel(context.Background())
	b := &testBroker{ctx: ctx, routes: map[string][]string{}, seen: map[string]int{}}
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		cancel()
		b.wg.Wait()
		srv.Close()
	})
	return b, srv.URL
}

// route sends events of types to url, as a Trigger filtered by type does;
// a type routed to several URLs goes to each.
func (b *testBroker) route(url string, types ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range types {
		b.routes[t] = append(b.routes[t], url)
	}
}

// reroute sends events of types to url alone, as when a Trigger's
// subscriber moves.
func (b *testBroker) reroute(url string, types ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range types {
		b.routes[t] = []string{url}
	}
}

func (b *testBroker) taken(typ string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[typ]
}

func (b *testBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.seen[e.Type()]++
	triggers := len(b.routes[e.Type()])
	b.mu.Unlock()
	copies := 1
	if e.Type() == eventing.TypeRequested {
		copies = 2
	}
	for trigger := range triggers {
		for i := range copies {
			b.wg.Go(func() { b.deliver(*e, trigger, testenv.Encoding(i%2)) })
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

// deliver sends e to the URL of the trigger-th route of its type, looked
// up anew for each attempt, until an attempt is answered 2xx.
func (b *testBroker) deliver(e cloudevents.Event, trigger int, enc testenv.Encoding) {
	delay := 50 * time.Millisecond
	for b.ctx.Err() == nil {
		b.mu.Lock()
		var url string
		if routes := b.routes[e.Type()]; trigger < len(routes) {
			url = routes[trigger]
		}
		b.mu.Unlock()
		if url != "" {
			if code, err := testenv.SendEvent(url, e, enc); err == nil && code/100 == 2 {
				return
			}
		}
		select {
		case <-time.After(delay):
		case <-b.ctx.Done():
		}
		delay = min(2*delay, time.Second)
	}
}

func TestOverHTTPTheAPIRunnerRecorderAndNotifierRunAGatheringThroughABroker(t *testing.T) {
	const key = "an e2e signing key of 32 bytes or more"
	broker, sink := newTestBroker(t)
	nats := testenv.NATS(t)
	dir := t.TempDir()
	common := map[string]string{
		"NATS_URL": nats.ClientURL(), "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off",
		"EVENTS_TRANSPORT": "http", "K_SINK": sink, "EVENTS_SIGNING_KEY": key,
	}
	with := func(fn string) map[string]string {
		env := map[string]string{"FUNCTIONS": fn}
		for k, v := range common {
			env[k] = v
		}
		return env
	}
	subscriber := sinkstest.New(t, nil)
	notifierEnv := with("notifier")
	notifierEnv["NOTIFIER_SINKS"] = subscriber.URL
	notifier := start(t, dir, notifierEnv)
	recorder := start(t, dir, with("recorder"))
	runner := start(t, dir, with("runner"))
	api := start(t, dir, with("api"))
	broker.route(runner.base+"/", eventing.TypeRequested)
	broker.route(recorder.base+"/", eventing.StatusTypes...)
	broker.route(notifier.base+"/", eventing.TypeCompleted, eventing.TypeFailed)

	count := filepath.Join(t.TempDir(), "count")
	gate := filepath.Join(t.TempDir(), "gate")
	cmd := fmt.Sprintf(`echo run >> %s; while [ ! -e %s ]; do sleep 0.05; done; %s`, count, gate, gatherCommand)
	g := api.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"custom-name": "plan:http", "command": %q}`, cmd)))
	testenv.Eventually(t, 30*time.Second, "the recorder to record the start", func() bool {
		cur, _ := api.get(t, fmt.Sprint(g.ID))
		return cur.Status == "inprogress"
	})

	// A forged completion posted straight to the recorder, unsigned and
	// signed with another key: answered, and not applied.
	for _, sign := range []func(*cloudevents.Event){nil, func(e *cloudevents.Event) { eventing.Sign(e, []byte("not the key, though 32 bytes long")) }} {
		forged, err := eventing.NewStatus(mustgather.Update{ID: mustgather.ID(g.ID), Seq: 1000, Status: mustgather.StatusCompleted, Time: time.Now(),
			ArchiveName: "evil.tar.gz", ArchiveSize: 1}, eventing.SourceRunner)
		if err != nil {
			t.Fatal(err)
		}
		if sign != nil {
			sign(&forged)
		}
		if code := testenv.DeliverEvent(t, recorder.base+"/", forged, testenv.Binary); code != http.StatusOK {
			t.Errorf("forged completion answered %d, want 200", code)
		}
		if cur, _ := api.get(t, fmt.Sprint(g.ID)); cur.Status != "inprogress" {
			t.Fatalf("after a forged completion the gathering is %s (%s)", cur.Status, cur.ArchiveName)
		}
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := api.waitEnded(t, g.ID)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	files := api.download(t, done)
	if files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" {
		t.Errorf("archive holds %v", files)
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Errorf("the command ran %d times, want 1 (each requested event was delivered twice)", n)
	}
	// The notifier, on a Trigger of its own, gets the final status too.
	testenv.Eventually(t, 30*time.Second, "the completed event at the subscriber", func() bool { return len(subscriber.Deliveries()) > 0 })
	if d := subscriber.Deliveries()[0]; d.Event.Type() != eventing.TypeCompleted || d.Event.Subject() != fmt.Sprint(g.ID) {
		t.Errorf("subscriber got %s of %s, want %s of %d", d.Event.Type(), d.Event.Subject(), eventing.TypeCompleted, g.ID)
	}
	// The runner records the final status before it sends its event.
	for _, typ := range []string{eventing.TypeRequested, eventing.TypeStarted, eventing.TypeCompleted} {
		testenv.Eventually(t, 30*time.Second, "the broker to take a "+typ+" event", func() bool { return broker.taken(typ) > 0 })
	}
}

func TestOnJetStreamWithAKeyEveryEventIsSignedAndAForgedStatusIsNotApplied(t *testing.T) {
	const key = "a JetStream signing key of 32+ bytes"
	s := start(t, t.TempDir(), map[string]string{"EVENTS_SIGNING_KEY": key})
	gate := filepath.Join(t.TempDir(), "gate")
	g := s.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"command": %q}`, fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done; echo done`, gate))))
	testenv.Eventually(t, 30*time.Second, "the gathering to start", func() bool {
		cur, _ := s.get(t, fmt.Sprint(g.ID))
		return cur.Status == "inprogress"
	})

	js := jetStream(t, s.natsURL)
	ctx := context.Background()
	forged, err := eventing.NewStatus(mustgather.Update{ID: mustgather.ID(g.ID), Seq: 1000, Status: mustgather.StatusCompleted, Time: time.Now(),
		ArchiveName: "evil.tar.gz", ArchiveSize: 1}, eventing.SourceRunner)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	msg := natsgo.NewMsg(fmt.Sprintf("mustgather.status.%d", g.ID))
	msg.Header.Set("Content-Type", cloudevents.ApplicationCloudEventsJSON)
	msg.Data = body
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the recorder to handle the forged event", func() bool {
		c, err := js.Consumer(ctx, "MUST_GATHER", "recorder")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= ack.Sequence
	})
	if cur, _ := s.get(t, fmt.Sprint(g.ID)); cur.Status != "inprogress" {
		t.Fatalf("after an unsigned completion the gathering is %s (%s)", cur.Status, cur.ArchiveName)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if done := s.waitEnded(t, g.ID); done.Status != "completed" || done.ArchiveName == "evil.tar.gz" {
		t.Fatalf("%s %s\n%s", done.Status, done.ArchiveName, done.ExecOutput)
	}
	// The runner records its final status before it publishes it.
	testenv.Eventually(t, 30*time.Second, "the runner's completion in the stream", func() bool {
		st, err := js.Stream(ctx, "MUST_GATHER")
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(ctx, fmt.Sprintf("mustgather.status.%d", g.ID))
		if err != nil {
			return false
		}
		e, err := natsbus.Decode(ctx, &natsgo.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		return err == nil && e.Type() == eventing.TypeCompleted && e.ID() != forged.ID()
	})
	// Every event the functions published verifies; only the forged one
	// does not.
	c, err := js.OrderedConsumer(ctx, "MUST_GATHER", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		e, err := natsbus.Decode(ctx, &natsgo.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if err != nil {
			t.Fatal(err)
		}
		err = eventing.Verify(e, []byte(key))
		if forgedOne := e.ID() == forged.ID(); forgedOne != (err != nil) {
			t.Errorf("event %s (%s): verify %v", e.ID(), e.Type(), err)
		}
		n++
	}
	if n < 4 {
		t.Errorf("%d events in the stream, want requested, started, completed and the forged one at least", n)
	}
}

func TestOverHTTPARunnerKilledOrStoppedMidGatheringLeavesNothingStuckAndRunsNothingTwice(t *testing.T) {
	const leaseTTL = 3 * time.Second
	for _, tt := range []struct {
		name   string
		stop   func(t *testing.T, c *child)
		output string        // in the gathering's output once it ended
		within time.Duration // after the stop
	}{
		// As when a pod is killed, or a node dies: the next runner's
		// reaper ends it once the lease has lapsed.
		{"killed (SIGKILL)", func(_ *testing.T, c *child) { c.kill() }, "runner stopped", leaseTTL + minReapInterval + 10*time.Second},
		// As when Knative scales a revision down: the runner ends it.
		{"stopped (SIGTERM)", func(t *testing.T, c *child) { c.stop(t) }, "shut down", 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			broker, sink := newTestBroker(t)
			nats := testenv.NATS(t)
			dir := t.TempDir()
			counts := filepath.Join(dir, "runs")
			if err := os.Mkdir(counts, 0o755); err != nil {
				t.Fatal(err)
			}
			with := func(fn string) map[string]string {
				return map[string]string{
					"FUNCTIONS": fn, "NATS_URL": nats.ClientURL(), "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off",
					"EVENTS_TRANSPORT": "http", "K_SINK": sink, "EVENTS_SIGNING_KEY": "a kill test signing key, 32+ bytes",
					"ARCHIVE_DIR": filepath.Join(dir, "archives"), "LEASE_TTL": leaseTTL.String(),
					"RUNNER_REAP_INTERVAL": minReapInterval.String(), "PROCESS_TEMP_DIR": t.TempDir(),
					"RUNNER_FINISH_GRACE": "5s",
				}
			}
			api := start(t, dir, with("api,recorder"))
			broker.route(api.base+"/", eventing.StatusTypes...)
			runner := startChild(t, with("runner"))
			broker.route(runner.base+"/", eventing.TypeRequested)

			command := fmt.Sprintf(`echo run >> %s/$MUST_GATHER_ID; sleep 300`, counts)
			running := api.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"command": %q, "timeout": "5m"}`, command))).ID
			testenv.Eventually(t, 30*time.Second, "the gathering's command to start", func() bool {
				b, _ := os.ReadFile(filepath.Join(counts, fmt.Sprint(running)))
				return strings.Contains(string(b), "run")
			})
			tt.stop(t, runner)
			stopped := time.Now()
			// Posted while no runner is up: the broker keeps retrying it.
			waiting := api.post(t, "application/json", strings.NewReader(`{"command": "echo after"}`)).ID

			runner = startChild(t, with("runner"))
			broker.reroute(runner.base+"/", eventing.TypeRequested)
			if g := api.waitEndedWithin(t, waiting, 30*time.Second); g.Status != "completed" {
				t.Errorf("the gathering posted while no runner was up: %s\n%s", g.Status, g.ExecOutput)
			}
			g := api.waitEndedWithin(t, running, tt.within)
			t.Logf("the gathering under way ended %s after the runner was %s", time.Since(stopped).Round(time.Millisecond), tt.name)
			if g.Status != "error" || !strings.Contains(g.ExecOutput, tt.output) {
				t.Errorf("the gathering under way: %s, want error with %q\n%s", g.Status, tt.output, g.ExecOutput)
			}
			// The broker delivered its requested event twice: it ran once.
			b, err := os.ReadFile(filepath.Join(counts, fmt.Sprint(running)))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "run"); n != 1 {
				t.Errorf("the gathering under way ran %d times, want 1", n)
			}
			runner.stop(t)
		})
	}
}

func TestOverHTTPABrokerThatIsDownHoldsUpAPOSTOnlyBrieflyAndTheEventIsDeadLettered(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	nats := testenv.NATS(t)
	api := start(t, t.TempDir(), map[string]string{
		"FUNCTIONS": "api", "NATS_URL": nats.ClientURL(), "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off",
		"EVENTS_TRANSPORT": "http", "K_SINK": fmt.Sprintf("http://127.0.0.1:%d/", port),
	})
	began := time.Now()
	g := api.post(t, "application/json", strings.NewReader(`{"command": "true"}`))
	took := time.Since(began)
	t.Logf("POST answered %s after it was sent, with the broker down", took.Round(time.Millisecond))
	if took > requestedTimeout+2*time.Second {
		t.Errorf("POST took %s with the broker down, want about %s at most", took, requestedTimeout)
	}
	if g.Status != "new" {
		t.Errorf("status %s, want new (stored; the reaper requeues it)", g.Status)
	}
	js := jetStream(t, nats.ClientURL())
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, "MUST_GATHER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mustgather.deadletter"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("no dead-letter record: %v", err)
	}
	e, err := natsbus.Decode(ctx, &natsgo.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("gathering-%d-requested", g.ID); e.ID() != want {
		t.Errorf("dead letter %s, want %s", e.ID(), want)
	}
}

// jetStream connects to the NATS server at url, until the test ends.
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
