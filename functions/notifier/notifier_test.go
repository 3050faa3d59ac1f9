package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

const wait = 20 * time.Second

func TestAGatheringsStreamShowsEachStateInOrderAndEndsAfterTheFinalOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	all := e.open(t, "/events")
	all.connected(t)
	// A name and output that an HTML-escaping encoder would change, and
	// output on several lines, which must stay on one data line.
	g := e.create(t, "plan <a&b>")
	one := e.open(t, "/must-gather/"+g.ID.String()+"/events")
	one.connected(t)

	steps := []func() mustgather.Gathering{
		func() mustgather.Gathering { return g },
		func() mustgather.Gathering { return e.claim(t, g.ID) },
		func() mustgather.Gathering { return e.apply(t, progress(g.ID, 1, "line 1\nline <2> & \u2028 3\n")) },
		func() mustgather.Gathering { return e.apply(t, completed(g.ID, 2)) },
	}
	var last uint64
	for i, step := range steps {
		want := step()
		served := e.asServed(t, g.ID)
		for name, s := range map[string]*sse{"its stream": one, "/events": all} {
			got := s.event(t, wait)
			if got.Revision != want.Revision || got.Status != want.Status {
				t.Fatalf("step %d on %s: event %d %s, want %d %s", i, name, got.Revision, got.Status, want.Revision, want.Status)
			}
			if got.data != served {
				t.Errorf("step %d on %s: data\n%s\nwant it as GET answers it:\n%s", i, name, got.data, served)
			}
		}
		if want.Revision <= last {
			t.Fatalf("step %d: revision %d after %d", i, want.Revision, last)
		}
		last = want.Revision
	}
	one.end(t, wait)
}

func TestAFinishedGatheringsStreamSendsItsStateAndEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	g := e.create(t, "done")
	e.claim(t, g.ID)
	g = e.apply(t, failed(g.ID, 1))

	t.Run("by custom-name, without Last-Event-ID: its final state, then the end", func(t *testing.T) {
		s := e.open(t, "/must-gather/done/events")
		s.connected(t)
		if u := s.event(t, wait); u.ID != g.ID || u.Status != mustgather.StatusError || u.Revision != g.Revision {
			t.Errorf("event %d of gathering %d %s, want %d %d error", u.Revision, u.ID, u.Status, g.Revision, g.ID)
		}
		s.end(t, wait)
	})
	t.Run("with a Last-Event-ID past its final state: nothing, then the end", func(t *testing.T) {
		s := e.open(t, "/must-gather/"+g.ID.String()+"/events", "Last-Event-ID", strconv.FormatUint(g.Revision, 10))
		s.connected(t)
		s.end(t, wait)
	})
	t.Run("with an earlier Last-Event-ID: its final state, then the end", func(t *testing.T) {
		s := e.open(t, "/must-gather/"+g.ID.String()+"/events", "Last-Event-ID", strconv.FormatUint(g.Revision-1, 10))
		s.connected(t)
		if u := s.event(t, wait); u.Revision != g.Revision {
			t.Errorf("event %d, want %d", u.Revision, g.Revision)
		}
		s.end(t, wait)
	})
}

// view is what a client knows of every gathering from the events it got.
type view map[mustgather.ID]mustgather.Gathering

func (v view) ended(n int) bool {
	if len(v) < n {
		return false
	}
	for _, g := range v {
		if !g.Status.Terminal() {
			return false
		}
	}
	return true
}

// matchesStore fails the test unless v holds every gathering as the store
// does, revision included.
func (v view) matchesStore(t testing.TB, e *env) {
	t.Helper()
	list, err := e.store.List(context.Background(), mustgather.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := view{}
	for _, g := range list {
		want[g.ID] = g
	}
	if diff := cmp.Diff(want, v, cmpopts.IgnoreFields(mustgather.Gathering{}, "Seq", "Reason"), cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("the client's view differs from the store (-store +view):\n%s", diff)
	}
}

// drive runs each of n new gatherings through claim, steps progress
// updates and a final status, all at once, and returns when all have
// ended.
func (e *env) drive(t testing.TB, n, steps int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			g := e.create(t, fmt.Sprintf("burst-%d", i))
			e.claim(t, g.ID)
			for s := 1; s <= steps; s++ {
				e.apply(t, progress(g.ID, uint64(s), strings.Repeat("x", s)))
			}
			if i%2 == 0 {
				e.apply(t, completed(g.ID, uint64(steps+1)))
			} else {
				e.apply(t, failed(g.ID, uint64(steps+1)))
			}
		})
	}
	wg.Wait()
}

func TestAClientThatReconnectsWithLastEventIDMissesNothingAndSeesNothingTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ClientBuffer: 10000}, envOptions{})
	const gatherings, steps = 40, 5
	first := e.open(t, "/events")
	first.connected(t)
	driven := make(chan struct{})
	go func() { defer close(driven); e.drive(t, gatherings, steps) }()

	// Read part of the burst, then drop the connection while updates
	// still come.
	v := view{}
	var last uint64
	for range gatherings * (steps + 3) / 3 {
		u := first.event(t, wait)
		if u.Revision <= last {
			t.Fatalf("event %d after %d", u.Revision, last)
		}
		last = u.Revision
		v[u.ID] = u.Gathering
	}
	first.close()
	select {
	case <-driven:
		t.Log("the burst ended before the reconnect; the resume is still checked")
	default:
	}
	lastEventID := last

	second := e.open(t, "/events", "Last-Event-ID", strconv.FormatUint(lastEventID, 10))
	second.connected(t)
	for !v.ended(gatherings) {
		u := second.event(t, wait)
		if u.Revision <= last {
			t.Fatalf("event %d after %d (Last-Event-ID %d)", u.Revision, last, lastEventID)
		}
		last = u.Revision
		v[u.ID] = u.Gathering
	}
	<-driven
	v.matchesStore(t, e)
}

func TestTwoHundredClientsAtOnceAllSeeTheSameChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxClients: 250}, envOptions{})
	const clients, gatherings = 200, 10
	streams := make([]*sse, clients)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			streams[i] = e.open(t, "/events")
			streams[i].connected(t)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e.drive(t, gatherings, 3)

	ids := make([][]uint64, clients)
	views := make([]view, clients)
	for i, s := range streams {
		wg.Go(func() {
			views[i] = view{}
			for !views[i].ended(gatherings) {
				u, ok := s.nextEvent(t, wait)
				if !ok {
					t.Errorf("client %d: stream ended (%v)", i, s.ended())
					return
				}
				ids[i] = append(ids[i], u.Revision)
				views[i][u.ID] = u.Gathering
			}
		})
	}
	wg.Wait()
	for i := range clients {
		if !cmp.Equal(ids[0], ids[i]) {
			t.Fatalf("client %d got events %v, client 0 %v", i, ids[i], ids[0])
		}
	}
	views[0].matchesStore(t, e)
	if got := e.metric(t, "mustgather_notifier_clients"); got != strconv.Itoa(clients) {
		t.Errorf("mustgather_notifier_clients %s, want %d", got, clients)
	}
}

func TestAnIdleStreamGetsHeartbeatsAndOutlivesTheServersReadTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Heartbeat: 50 * time.Millisecond}, envOptions{readTimeout: 200 * time.Millisecond})
	s := e.open(t, "/events")
	s.connected(t)
	start := time.Now()
	beats := 0
	for time.Since(start) < time.Second {
		f, ok := s.next(t, wait)
		if !ok {
			t.Fatalf("stream ended after %s (%v)", time.Since(start), s.ended())
		}
		if f.IsEvent() || len(f.Comments) != 1 || f.Comments[0] != "heartbeat" {
			t.Fatalf("frame %+v on an idle stream, want : heartbeat", f)
		}
		beats++
	}
	if beats < 5 {
		t.Errorf("%d heartbeats in a second, want about 20", beats)
	}
	// Still a live stream: a change comes through.
	g := e.create(t, "")
	if u := s.event(t, wait); u.ID != g.ID {
		t.Errorf("event of gathering %d, want %d", u.ID, g.ID)
	}
}

// dialSlow opens /events on a connection with a small receive buffer and
// never reads from it.
func dialSlow(t *testing.T, base string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: notifier\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestASlowClientIsDroppedWithoutHoldingUpTheOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ClientBuffer: 4, WriteTimeout: 300 * time.Millisecond}, envOptions{sendBuffer: 4096})
	fast := e.open(t, "/events")
	fast.connected(t)
	dialSlow(t, e.base)
	testenv.Eventually(t, wait, "two streams", func() bool { return e.metric(t, "mustgather_notifier_clients") == "2" })

	g := e.create(t, "")
	if u := fast.event(t, wait); u.ID != g.ID {
		t.Fatalf("event of %d, want %d", u.ID, g.ID)
	}
	e.claim(t, g.ID)
	fast.event(t, wait)
	// Events of 32 KiB each: a few fill the socket buffers, then the slow
	// stream's queue. The fast client gets each before the next is
	// written.
	for seq := uint64(1); seq <= 40; seq++ {
		want := e.apply(t, progress(g.ID, seq, strings.Repeat(strconv.FormatUint(seq%10, 10), 32<<10)))
		if u := fast.event(t, wait); u.Revision != want.Revision {
			t.Fatalf("fast client: event %d, want %d", u.Revision, want.Revision)
		}
	}
	// The slow stream ends when its queue is full or a write to it times
	// out, whichever comes first, and lets its place go.
	testenv.Eventually(t, wait, "the slow stream to end", func() bool { return e.metric(t, "mustgather_notifier_clients") == "1" })
	if got := e.metric(t, "mustgather_notifier_clients_dropped_total"); got != "1" {
		t.Errorf("mustgather_notifier_clients_dropped_total %q, want 1", got)
	}
}

func TestStreamsBeyondTheMaximumAreRefusedWithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxClients: 2}, envOptions{})
	a := e.open(t, "/events")
	a.connected(t)
	b := e.open(t, "/events")
	b.connected(t)
	resp, cancel := e.get(t, "/events")
	body, _ := io.ReadAll(resp.Body)
	cancel()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" ||
		resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("a third stream: %d Retry-After %q %s, want 503 with Retry-After 3 and a JSON error", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := e.metric(t, "mustgather_notifier_clients_refused_total"); got != "1" {
		t.Errorf("mustgather_notifier_clients_refused_total %q, want 1", got)
	}
	a.close()
	testenv.Eventually(t, wait, "a place to be free again", func() bool {
		resp, cancel := e.get(t, "/events")
		defer cancel()
		return resp.StatusCode == http.StatusOK
	})
}

func TestBadRequestsGetAJSONError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	e.create(t, "")
	for _, tt := range []struct {
		name, path, lastEventID string
		status                  int
		field                   string
	}{
		{"a Last-Event-ID that is no number on /events", "/events", "abc", 400, "Last-Event-ID"},
		{"a negative Last-Event-ID on a gathering's stream", "/must-gather/1/events", "-1", 400, "Last-Event-ID"},
		{"an unknown gathering", "/must-gather/999/events", "", 404, ""},
		{"an unknown custom-name", "/must-gather/nobody/events", "", 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			if tt.lastEventID != "" {
				h = []string{"Last-Event-ID", tt.lastEventID}
			}
			resp, cancel := e.get(t, tt.path, h...)
			defer cancel()
			var body struct{ Error, Field string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != tt.status || body.Field != tt.field || body.Error == "" {
				t.Errorf("%d %+v (%v), want %d naming %q", resp.StatusCode, body, err, tt.status, tt.field)
			}
		})
	}
}

func TestStoppingTheNotifierEndsEveryStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	all := e.open(t, "/events")
	all.connected(t)
	g := e.create(t, "")
	all.event(t, wait)
	one := e.open(t, "/must-gather/"+g.ID.String()+"/events")
	one.connected(t)
	one.event(t, wait)
	e.stop()
	all.end(t, wait)
	one.end(t, wait)
	if e.n.Ready(context.Background()) == nil {
		t.Error("ready after it stopped")
	}
	resp, cancel := e.get(t, "/events")
	defer cancel()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream after the stop: %d, want 503", resp.StatusCode)
	}
}

func TestAHEADRequestGetsTheStreamsHeadersAndEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	req, err := http.NewRequest(http.MethodHead, e.base+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD /events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	testenv.Eventually(t, wait, "no stream left open", func() bool { return e.metric(t, "mustgather_notifier_clients") == "0" })
}

func TestStreamsGoOnAcrossARestartOfNATS(t *testing.T) {
	t.Parallel()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts := natsserver.Options{Port: port, StoreDir: t.TempDir()}
	first := testenv.NATSWith(t, opts)
	e := newEnv(t, Config{}, envOptions{nats: first})
	s := e.open(t, "/events")
	s.connected(t)
	g := e.create(t, "")
	if u := s.event(t, wait); u.ID != g.ID {
		t.Fatalf("event of %d, want %d", u.ID, g.ID)
	}
	first.Stop()
	testenv.NATSWith(t, opts)
	var claimed mustgather.Gathering
	testenv.Eventually(t, wait, "a claim once NATS is back", func() bool {
		var err error
		claimed, err = e.store.Claim(context.Background(), g.ID, time.Now())
		return err == nil
	})
	if u := s.event(t, time.Minute); u.ID != g.ID || u.Revision != claimed.Revision || u.Status != mustgather.StatusInProgress {
		t.Errorf("event %d of %d %s, want the claim at %d", u.Revision, u.ID, u.Status, claimed.Revision)
	}
}

func TestALastEventIDBeyondTheStoreStartsAfresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, envOptions{})
	g := e.create(t, "")
	// As a page that was open while the store was emptied (make clean)
	// would send.
	ahead := strconv.FormatUint(g.Revision+1000, 10)
	one := e.open(t, "/must-gather/"+g.ID.String()+"/events", "Last-Event-ID", ahead)
	one.connected(t)
	if u := one.event(t, wait); u.Revision != g.Revision {
		t.Errorf("gathering's stream: event %d, want its state at %d", u.Revision, g.Revision)
	}
	all := e.open(t, "/events", "Last-Event-ID", ahead)
	all.connected(t)
	claimed := e.claim(t, g.ID)
	if u := all.event(t, wait); u.Revision != claimed.Revision {
		t.Errorf("/events: event %d, want the claim at %d", u.Revision, claimed.Revision)
	}
}
