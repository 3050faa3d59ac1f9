package sinks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// env is one test's NATS, store, bus and names.
type env struct {
	srv    *natsserver.Server
	js     jetstream.JetStream
	store  *jsstore.Store
	bus    *natsbus.Bus
	busCfg natsbus.Config
	cfg    sinks.Config // names unique to the test, fast retries
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{srv: testenv.NATS(t)}
	e.js = e.connect(t)
	ctx := context.Background()
	var err error
	if e.store, err = jsstore.New(ctx, e.js, jsstore.Config{Bucket: testenv.Name("mg"), LeaseBucket: testenv.Name("leases")}); err != nil {
		t.Fatal(err)
	}
	e.busCfg = natsbus.Config{Stream: testenv.Name("EVENTS"), SubjectPrefix: testenv.Name("mg")}
	if e.bus, err = natsbus.New(ctx, e.js, e.busCfg); err != nil {
		t.Fatal(err)
	}
	e.cfg = sinks.Config{
		Retries: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 5 * time.Second,
		Durable: testenv.Name("sinks"), DeadLetterStream: testenv.Name("DEADLETTER"), DeliveriesBucket: testenv.Name("deliveries"),
	}
	return e
}

// connect opens a connection of its own, as another replica would.
func (e *env) connect(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, e.srv))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (e *env) notifier(t testing.TB, js jetstream.JetStream, cfg sinks.Config, reg prometheus.Registerer) *sinks.Notifier {
	t.Helper()
	bus, err := natsbus.New(context.Background(), js, e.busCfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sinks.New(context.Background(), cfg, sinks.Deps{JS: js, Bus: bus, Records: e.store, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// run runs n until the test ends, and waits for its consumer.
func (e *env) run(t testing.TB, n *sinks.Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	testenv.Eventually(t, 10*time.Second, "the consumer", func() bool {
		_, err := e.js.Consumer(context.Background(), e.busCfg.Stream, e.cfg.Durable)
		return err == nil
	})
	return stop
}

// finish creates a gathering, ends it in the store with status and
// publishes its final event, as a runner does.
func (e *env) finish(t testing.TB, name string, status mustgather.Status) (mustgather.Gathering, cloudevents.Event) {
	t.Helper()
	g, u := e.settle(t, name, status)
	if err := e.bus.Updated(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	ev, err := eventing.NewStatus(u, eventing.SourceRunner)
	if err != nil {
		t.Fatal(err)
	}
	return g, ev
}

// settle creates a gathering and ends it in the store with status, and
// returns the final update to publish.
func (e *env) settle(t testing.TB, name string, status mustgather.Status) (mustgather.Gathering, mustgather.Update) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	g, err := e.store.Create(ctx, mustgather.NewGathering(mustgather.Request{CustomName: name, Command: "true", Timeout: "1m"}, now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Claim(ctx, g.ID, now); err != nil {
		t.Fatal(err)
	}
	u := mustgather.Update{ID: g.ID, Seq: 2, Status: status, Time: now, ExecOutput: "gathered"}
	if status == mustgather.StatusCompleted {
		u.ArchiveName, u.ArchiveSize = "must-gather-"+g.ID.String()+".tar.gz", 42
	} else {
		u.Reason = "it broke"
	}
	if g, err = e.store.Apply(ctx, u); err != nil {
		t.Fatal(err)
	}
	return g, u
}

// drained waits until the consumer has handled every event.
func (e *env) drained(t testing.TB) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "every event handled", func() bool {
		c, err := e.js.Consumer(context.Background(), e.busCfg.Stream, e.cfg.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// deadLetters reads every record of the dead-letter stream.
func (e *env) deadLetters(t testing.TB) []sinks.DeadLetter {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, e.cfg.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []sinks.DeadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(m.Data, []byte(secret)) {
			t.Errorf("dead letter %d holds the secret: %s", seq, m.Data)
		}
		var dl sinks.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		if want := e.cfg.DeadLetterStream + "." + dl.Event.Subject(); m.Subject != want {
			t.Errorf("dead letter on %s, want %s", m.Subject, want)
		}
		out = append(out, dl)
	}
	return out
}

const secret = "s3cr3t-for-the-sinks"

// wantData is the data a sink gets for g: the gathering as the API returns
// it, and its download path.
func wantData(t *testing.T, g mustgather.Gathering) map[string]any {
	t.Helper()
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["download"] = "/must-gather/" + g.ID.String() + "/data"
	if g.Reason != "" {
		m["reason"] = g.Reason
	}
	return m
}

func TestFinalEventsReachEverySinkOnceInBinaryModeSignedAndWithTheStoredGathering(t *testing.T) {
	e := newEnv(t)
	a, b := sinkstest.New(t, nil), sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks, cfg.Secret = []string{a.URL, b.URL}, secret
	reg := prometheus.NewRegistry()
	e.run(t, e.notifier(t, e.js, cfg, reg))

	// A progress event is not for subscribers.
	if err := e.bus.Updated(context.Background(), mustgather.Update{ID: 99, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	done, doneEv := e.finish(t, "done", mustgather.StatusCompleted)
	failed, failedEv := e.finish(t, "failed", mustgather.StatusError)
	want := map[string]struct {
		typ string
		g   mustgather.Gathering
	}{
		doneEv.ID():   {eventing.TypeCompleted, done},
		failedEv.ID(): {eventing.TypeFailed, failed},
	}
	for _, r := range []*sinkstest.Receiver{a, b} {
		testenv.Eventually(t, 10*time.Second, "both final events at "+r.URL, func() bool { return len(r.Count()) == 2 })
	}
	e.drained(t)
	for _, r := range []*sinkstest.Receiver{a, b} {
		if diff := cmp.Diff(map[string]int{doneEv.ID(): 1, failedEv.ID(): 1}, r.Count()); diff != "" {
			t.Errorf("%s got (-want +got):\n%s", r.URL, diff)
		}
		for _, d := range r.Deliveries() {
			w := want[d.Event.ID()]
			if d.Event.Type() != w.typ || d.Event.Source() != sinks.Source || d.Event.Subject() != w.g.ID.String() {
				t.Errorf("event %s: type %s, source %s, subject %s; want %s, %s, %d", d.Event.ID(), d.Event.Type(), d.Event.Source(), d.Event.Subject(), w.typ, sinks.Source, w.g.ID)
			}
			if d.Header.Get("Ce-Id") != d.Event.ID() || d.Header.Get("Content-Type") != "application/json" {
				t.Errorf("event %s not in binary mode: ce-id %q, content-type %q", d.Event.ID(), d.Header.Get("Ce-Id"), d.Header.Get("Content-Type"))
			}
			var got map[string]any
			if err := json.Unmarshal(d.Event.Data(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantData(t, w.g), got); diff != "" {
				t.Errorf("event %s data (-want +got):\n%s", d.Event.ID(), diff)
			}
			if err := sinks.Verify([]byte(secret), d.Header.Get(sinks.SignatureHeader), d.Header.Get("Ce-Id"), d.Event.Data(), 0, time.Now()); err != nil {
				t.Errorf("event %s: signature: %v", d.Event.ID(), err)
			}
		}
	}
	for _, r := range []*sinkstest.Receiver{a, b} {
		host := strings.TrimSuffix(strings.TrimPrefix(r.URL, "http://"), "/events")
		if got := testenv.Counter(t, reg, "mustgather_notifier_sink_deliveries_total", "delivered", host); got != 2 {
			t.Errorf("deliveries to %s: %v, want 2", host, got)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestWhatASubscriberGetsIsTheGoldenRequest keeps the requests that
// subscribers parse in testdata: the CloudEvents headers and the data
// (indented there) of a completed and a failed gathering. The signature
// changes with the time, so it is verified instead.
func TestWhatASubscriberGetsIsTheGoldenRequest(t *testing.T) {
	e := newEnv(t)
	r := sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks, cfg.Secret = []string{r.URL}, secret
	n := e.notifier(t, e.js, cfg, nil)
	at := time.Date(2026, 11, 30, 10, 0, 0, 123456789, time.UTC)
	ctx := context.Background()
	for i, status := range []mustgather.Status{mustgather.StatusCompleted, mustgather.StatusError} {
		g, err := e.store.Create(ctx, mustgather.NewGathering(mustgather.Request{
			CustomName: "plan:mig-plan-cold", Image: "quay.io/kubev2v/forklift-must-gather:latest",
			Command: "PLAN=mig-plan-cold NS=openshift-mtv /usr/bin/targeted", Timeout: "30m",
		}, at))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Claim(ctx, g.ID, at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		u := mustgather.Update{ID: g.ID, Seq: 7, Status: status, Time: at.Add(3 * time.Minute), ExecOutput: "[must-gather-abcde] OUT done\n"}
		if status == mustgather.StatusCompleted {
			u.ArchiveName, u.ArchiveSize = "must-gather-1-plan-mig-plan-cold.tar.gz", 95334
		} else {
			u.Reason = "timed out after 30m"
		}
		if _, err := e.store.Apply(ctx, u); err != nil {
			t.Fatal(err)
		}
		ev, err := eventing.NewStatus(u, eventing.SourceRunner)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
		d := r.Deliveries()[i]
		if err := sinks.Verify([]byte(secret), d.Header.Get(sinks.SignatureHeader), d.Event.ID(), d.Event.Data(), 0, time.Now()); err != nil {
			t.Errorf("signature: %v", err)
		}
		var got bytes.Buffer
		for _, h := range []string{"Content-Type", "Ce-Specversion", "Ce-Id", "Ce-Type", "Ce-Source", "Ce-Subject", "Ce-Time"} {
			fmt.Fprintf(&got, "%s: %s\n", h, d.Header.Get(h))
		}
		got.WriteString("\n")
		if err := json.Indent(&got, d.Event.Data(), "", "  "); err != nil {
			t.Fatal(err)
		}
		got.WriteString("\n")
		path := filepath.Join("testdata", string(status)+".http")
		if *update {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./functions/notifier/sinks -run Golden -update)", err)
		}
		if diff := cmp.Diff(string(want), got.String()); diff != "" {
			t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
		}
	}
}

func TestAFinalEventHandledTwiceReachesEachSinkOnce(t *testing.T) {
	e := newEnv(t)
	r := sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks = []string{r.URL}
	n := e.notifier(t, e.js, cfg, nil)
	_, ev := e.finish(t, "twice", mustgather.StatusCompleted)
	// A republished final event (the reaper's, after the stream's
	// duplicate window) comes to the handler as a second message.
	for range 2 {
		if err := n.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(map[string]int{ev.ID(): 1}, r.Count()); diff != "" {
		t.Errorf("sink got (-want +got):\n%s", diff)
	}
}

func TestFailedDeliveriesAreRetriedOrDeadLettered(t *testing.T) {
	tests := []struct {
		name         string
		answer       func(n int) int
		retryAfter   string
		wantRequests int
		wantAccepted int
		// wantDead is the HTTP status of the dead letter's last attempt;
		// 0: no dead letter.
		wantDead int
	}{
		{"500 twice then 200 is delivered on the third attempt", func(n int) int { return pick(n < 3, 500, 200) }, "", 3, 1, 0},
		{"408 and 429 with Retry-After are retried", func(n int) int { return []int{408, 429, 200}[min(n, 3)-1] }, "0", 3, 1, 0},
		{"400 is not retried and is dead-lettered at once", func(int) int { return 400 }, "", 1, 0, 400},
		{"404 is not retried", func(int) int { return 404 }, "", 1, 0, 404},
		{"503 until the limit is dead-lettered after 1+Retries attempts", func(int) int { return 503 }, "", 4, 0, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := sinkstest.New(t, tt.answer)
			r.RetryAfter = tt.retryAfter
			cfg := e.cfg
			cfg.Sinks, cfg.Secret = []string{r.URL + "?token=" + secret}, secret
			n := e.notifier(t, e.js, cfg, nil)
			_, ev := e.finish(t, "retried", mustgather.StatusCompleted)
			if err := n.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if got := r.Requests(); got != tt.wantRequests {
				t.Errorf("requests %d, want %d", got, tt.wantRequests)
			}
			if got := len(r.Deliveries()); got != tt.wantAccepted {
				t.Errorf("accepted %d, want %d", got, tt.wantAccepted)
			}
			dead := e.deadLetters(t)
			if tt.wantDead == 0 {
				if len(dead) != 0 {
					t.Errorf("dead letters %+v, want none", dead)
				}
				return
			}
			if len(dead) != 1 {
				t.Fatalf("dead letters %+v, want one", dead)
			}
			d := dead[0]
			if d.Event.ID() != ev.ID() || d.Event.Type() != eventing.TypeCompleted || d.Sink != r.URL || d.Attempts != tt.wantRequests || d.LastStatus != tt.wantDead || !strings.Contains(d.LastError, strconv.Itoa(tt.wantDead)) {
				t.Errorf("dead letter: event %s %s, sink %s, %d attempts, last %d %q; want %s, %s, %d, %d",
					d.Event.ID(), d.Event.Type(), d.Sink, d.Attempts, d.LastStatus, d.LastError, ev.ID(), r.URL, tt.wantRequests, tt.wantDead)
			}
			// Handled again, a dead-lettered event is not sent again.
			if err := n.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if got := r.Requests(); got != tt.wantRequests {
				t.Errorf("requests after a second Handle %d, want %d", got, tt.wantRequests)
			}
		})
	}
}

func pick(c bool, a, b int) int {
	if c {
		return a
	}
	return b
}

func TestAnUnreachableSinkIsDeadLetteredAfterTheLimit(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://user:" + secret + "@" + ln.Addr().String() + "/gone"
	ln.Close() // nothing listens there any more
	cfg := e.cfg
	cfg.Sinks, cfg.Retries = []string{url}, 2
	n := e.notifier(t, e.js, cfg, nil)
	_, ev := e.finish(t, "unreachable", mustgather.StatusError)
	if err := n.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	dead := e.deadLetters(t)
	if len(dead) != 1 || dead[0].Attempts != 3 || dead[0].LastStatus != 0 || dead[0].Event.Type() != eventing.TypeFailed ||
		dead[0].Sink != "http://"+ln.Addr().String()+"/gone" {
		t.Errorf("dead letters %+v, want one of 3 attempts without status", dead)
	}
}

func TestTwoReplicasDeliverEachEventOnce(t *testing.T) {
	e := newEnv(t)
	r := sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks = []string{r.URL}
	e.run(t, e.notifier(t, e.connect(t), cfg, nil))
	e.run(t, e.notifier(t, e.connect(t), cfg, nil))
	want := map[string]int{}
	for i := range 20 {
		_, ev := e.finish(t, "replicas-"+strconv.Itoa(i), mustgather.StatusCompleted)
		want[ev.ID()] = 1
	}
	testenv.Eventually(t, 20*time.Second, "every event", func() bool { return len(r.Count()) == len(want) })
	e.drained(t)
	if diff := cmp.Diff(want, r.Count()); diff != "" {
		t.Errorf("sink got (-want +got):\n%s", diff)
	}
}

func TestAnEventHeldByAReplicaThatGoesIsDeliveredByAnother(t *testing.T) {
	for _, tt := range []struct {
		name string
		// crash: the replica's connection goes without a word to the
		// server, whose ack wait then gives the event to another; else
		// the replica stops and hands it back at once, well before its
		// ack wait.
		crash   bool
		ackWait time.Duration
	}{
		{"a replica that dies loses it for its ack wait", true, time.Second},
		{"a replica that stops hands it back at once", false, time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var healthy atomic.Bool
			ok := sinkstest.New(t, nil)
			flaky := sinkstest.New(t, func(int) int { return pick(healthy.Load(), 200, 503) })
			cfg := e.cfg
			cfg.Sinks, cfg.AckWait, cfg.Retries = []string{ok.URL, flaky.URL}, tt.ackWait, 1000
			first := testenv.Conn(t, e.srv)
			js1, err := jetstream.New(first)
			if err != nil {
				t.Fatal(err)
			}
			stop1 := e.run(t, e.notifier(t, js1, cfg, nil))
			_, ev := e.finish(t, "replica-goes", mustgather.StatusCompleted)

			// The first replica delivered to one sink and is retrying the
			// other when it goes.
			testenv.Eventually(t, 10*time.Second, "a delivery and a failed attempt", func() bool {
				return len(ok.Count()) == 1 && flaky.Requests() >= 2 && e.recorded(t) == 1
			})
			if tt.crash {
				first.Close()
			}
			stop1()
			healthy.Store(true)

			e.run(t, e.notifier(t, e.connect(t), cfg, nil))
			testenv.Eventually(t, 10*time.Second, "the event at the flaky sink", func() bool { return len(flaky.Count()) == 1 })
			e.drained(t)
			if diff := cmp.Diff(map[string]int{ev.ID(): 1}, ok.Count()); diff != "" {
				t.Errorf("the sink that had it got (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{ev.ID(): 1}, flaky.Count()); diff != "" {
				t.Errorf("the flaky sink got (-want +got):\n%s", diff)
			}
		})
	}
}

// recorded returns how many deliveries the bucket records.
func (e *env) recorded(t testing.TB) int {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), e.cfg.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestHTTPSSinksSignedByAPrivateCANeedItsCAFile(t *testing.T) {
	ca := testenv.NewCA(t, "sinks")
	server := ca.ServerTLS(t, "sink")
	server.ClientAuth = tls.NoClientCert
	for _, tt := range []struct {
		name      string
		caFile    string
		delivered bool
	}{
		{"with the CA file the event is delivered", ca.CertFile, true},
		{"without it the certificate is not trusted and the event is dead-lettered", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := sinkstest.NewTLS(t, server, nil)
			cfg := e.cfg
			cfg.Sinks, cfg.CAFile, cfg.Retries = []string{r.URL}, tt.caFile, 1
			n := e.notifier(t, e.js, cfg, nil)
			_, ev := e.finish(t, "https", mustgather.StatusCompleted)
			if err := n.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if got := len(r.Count()) == 1; got != tt.delivered {
				t.Errorf("delivered %v, want %v", got, tt.delivered)
			}
			if dead := e.deadLetters(t); tt.delivered == (len(dead) != 0) {
				t.Errorf("dead letters %+v", dead)
			} else if !tt.delivered && !strings.Contains(dead[0].LastError, "certificate") {
				t.Errorf("last error %q does not say why", dead[0].LastError)
			}
		})
	}
}

func TestPresignedURLsNeedAPresigner(t *testing.T) {
	e := newEnv(t)
	bus := e.bus
	cfg := e.cfg
	cfg.Sinks, cfg.Presigned = []string{"http://127.0.0.1:1/x"}, true
	if _, err := sinks.New(context.Background(), cfg, sinks.Deps{JS: e.js, Bus: bus, Records: e.store}); !errors.Is(err, sinks.ErrNoPresigner) {
		t.Errorf("New without a presigner: %v, want ErrNoPresigner", err)
	}
}

func TestPresignedURLsAreAddedToCompletedGatheringsWithAnArchive(t *testing.T) {
	e := newEnv(t)
	r := sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks, cfg.Presigned = []string{r.URL}, true
	expires := time.Date(2026, 11, 30, 12, 15, 0, 0, time.UTC)
	n, err := sinks.New(context.Background(), cfg, sinks.Deps{JS: e.js, Bus: e.bus, Records: e.store,
		Presign: func(_ context.Context, g mustgather.Gathering) (string, time.Time, error) {
			switch g.CustomName {
			case "archive-gone":
				return "", time.Time{}, fmt.Errorf("%w: no archive", mustgather.ErrNotCompleted)
			case "store-down":
				return "", time.Time{}, errors.New("S3 does not answer")
			}
			return "https://s3.example.com/" + g.ArchiveName + "?X-Amz-Signature=abc", expires, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	done, doneEv := e.finish(t, "done", mustgather.StatusCompleted)
	failed, failedEv := e.finish(t, "failed", mustgather.StatusError)
	gone, goneEv := e.finish(t, "archive-gone", mustgather.StatusCompleted)
	for _, ev := range []cloudevents.Event{doneEv, failedEv, goneEv} {
		if err := n.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// A presigner that fails for now: the event comes again later.
	if _, ev := e.finish(t, "store-down", mustgather.StatusCompleted); n.Handle(context.Background(), ev) == nil {
		t.Error("Handle succeeded without the link it was to send")
	}
	wantDone := wantData(t, done)
	wantDone["download-url"] = "https://s3.example.com/" + done.ArchiveName + "?X-Amz-Signature=abc"
	wantDone["download-url-expires-at"] = "2026-11-30T12:15:00Z"
	want := map[string]map[string]any{doneEv.ID(): wantDone, failedEv.ID(): wantData(t, failed), goneEv.ID(): wantData(t, gone)}
	for _, d := range r.Deliveries() {
		var got map[string]any
		if err := json.Unmarshal(d.Event.Data(), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want[d.Event.ID()], got); diff != "" {
			t.Errorf("event %s data (-want +got):\n%s", d.Event.ID(), diff)
		}
	}
	if len(r.Deliveries()) != 3 {
		t.Errorf("%d deliveries, want 3", len(r.Deliveries()))
	}
}

func TestSinkURLsMustBeHTTP(t *testing.T) {
	tests := []struct {
		name    string
		urls    []string
		wantErr string // "" for none
	}{
		{"http and https URLs are sinks", []string{"http://a.example/x", "https://b.example:8443/"}, ""},
		{"no sink is fine", nil, ""},
		{"another scheme is refused by its position", []string{"http://a.example", "ftp://b.example/"}, "entry 2 (ftp://b.example/) is not an absolute http or https URL"},
		{"a relative URL is refused", []string{"/hook"}, "entry 1 (/hook) is not an absolute"},
		{"a repeated sink is refused", []string{"http://a.example", "http://a.example"}, "entry 2 (http://a.example) repeats"},
		{"user info and query are not quoted", []string{"ftp://u:pw@b.example/p?token=t"}, "entry 1 (ftp://b.example/p) is not"},
		{"a URL that does not parse is refused", []string{"http://[::1"}, "entry 1 is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sinks.CheckSinks(tt.urls)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckSinks: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckSinks: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyAcceptsOnlyAFreshSignatureOfTheSameEventAndBody(t *testing.T) {
	key := []byte(secret)
	body := []byte(`{"id":1,"status":"completed"}`)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	good := sinks.Sign(key, "gathering-1-2-completed", body, at)
	tests := []struct {
		name   string
		key    []byte
		header string
		id     string
		body   []byte
		now    time.Time
		want   error
	}{
		{"the signed request verifies", key, good, "gathering-1-2-completed", body, at.Add(time.Minute), nil},
		{"a tampered body fails", key, good, "gathering-1-2-completed", []byte(`{"id":1,"status":"error"}`), at, sinks.ErrInvalidSignature},
		{"the body under another event id fails", key, good, "gathering-2-2-completed", body, at, sinks.ErrInvalidSignature},
		{"another secret fails", []byte("other"), good, "gathering-1-2-completed", body, at, sinks.ErrInvalidSignature},
		{"a replay after the tolerance fails", key, good, "gathering-1-2-completed", body, at.Add(6 * time.Minute), sinks.ErrSignatureExpired},
		{"a timestamp from the future fails", key, good, "gathering-1-2-completed", body, at.Add(-6 * time.Minute), sinks.ErrSignatureExpired},
		{"a changed timestamp fails", key, strings.Replace(good, "t=", "t=1", 1), "gathering-1-2-completed", body, at, sinks.ErrInvalidSignature},
		{"no header fails", key, "", "gathering-1-2-completed", body, at, sinks.ErrInvalidSignature},
		{"a header without v1 fails", key, "t=1764504000", "gathering-1-2-completed", body, at, sinks.ErrInvalidSignature},
		{"one matching v1 among several verifies", key, good + ",v1=00ff", "gathering-1-2-completed", body, at, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sinks.Verify(tt.key, tt.header, tt.id, tt.body, 0, tt.now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify: %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzVerify: Verify never panics on any header, accepts what Sign made for
// the same event id and body, and nothing else made of them.
func FuzzVerify(f *testing.F) {
	f.Add("t=1764504000,v1=00", "gathering-1-2-completed", []byte(`{"id":1}`))
	f.Add("t=,v1=,v1", "", []byte{})
	f.Add("v1=zz,t=-1", "x", []byte("\n"))
	at := time.Unix(1764504000, 0)
	f.Fuzz(func(t *testing.T, header, id string, body []byte) {
		_ = sinks.Verify([]byte(secret), header, id, body, 0, at)
		if strings.Contains(id, "\n") {
			return // never a header's value
		}
		good := sinks.Sign([]byte(secret), id, body, at)
		if err := sinks.Verify([]byte(secret), good, id, body, 0, at); err != nil {
			t.Errorf("Verify of Sign: %v", err)
		}
		if err := sinks.Verify([]byte(secret), good, id, append(body, 'x'), 0, at); err == nil {
			t.Error("a longer body verifies")
		}
	})
}

func TestOnlyFinalEventsSignedWithTheEventsKeyAreDelivered(t *testing.T) {
	key := []byte("the events signing key, 32 bytes or more")
	e := newEnv(t)
	r := sinkstest.New(t, nil)
	cfg := e.cfg
	cfg.Sinks, cfg.EventsKey = []string{r.URL}, key
	n := e.notifier(t, e.js, cfg, nil)
	for _, tt := range []struct {
		name      string
		sign      func(*cloudevents.Event)
		delivered bool
	}{
		{"an unsigned event is not delivered", func(*cloudevents.Event) {}, false},
		{"an event signed with another key is not delivered", func(ev *cloudevents.Event) { eventing.Sign(ev, []byte("another key of 32 bytes or more!!")) }, false},
		{"an event signed with the key is delivered", func(ev *cloudevents.Event) { eventing.Sign(ev, key) }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ev := e.finish(t, "signed", mustgather.StatusCompleted)
			tt.sign(&ev)
			if err := n.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if got := r.Count()[ev.ID()] == 1; got != tt.delivered {
				t.Errorf("delivered %v, want %v", got, tt.delivered)
			}
		})
	}
}

func TestACopyOfAnEventBeingDeliveredWaitsForItsTurn(t *testing.T) {
	e := newEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var enter, free sync.Once
	t.Cleanup(func() { free.Do(func() { close(release) }) })
	// The sink holds its first request until the copy has been handled.
	slow := sinkstest.New(t, func(n int) int {
		if n == 1 {
			enter.Do(func() { close(entered) })
			<-release
		}
		return http.StatusOK
	})
	cfg := e.cfg
	cfg.Sinks = []string{slow.URL}
	n := e.notifier(t, e.js, cfg, nil)
	_, ev := e.finish(t, "in-flight", mustgather.StatusCompleted)

	first := make(chan error, 1)
	go func() { first <- n.Handle(context.Background(), ev) }()
	<-entered
	// A copy, as the server sends when the first's ack wait runs out.
	if err := n.Handle(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "being delivered by this process already") {
		t.Errorf("the copy: %v, want an error that brings it again later", err)
	}
	free.Do(func() { close(release) })
	if err := <-first; err != nil {
		t.Fatalf("the first: %v", err)
	}
	// Its next turn finds the delivery recorded.
	if err := n.Handle(context.Background(), ev); err != nil {
		t.Errorf("the copy's next turn: %v", err)
	}
	if diff := cmp.Diff(map[string]int{ev.ID(): 1}, slow.Count()); diff != "" {
		t.Errorf("the sink got (-want +got):\n%s", diff)
	}
}
