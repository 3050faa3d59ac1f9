package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// env is the API with the notifier's routes, as `make run` serves them,
// on a real HTTP server on loopback, over a store on an embedded NATS.
type env struct {
	t     testing.TB
	store *jsstore.Store
	n     *Notifier
	base  string
	srv   *httptest.Server
	stop  context.CancelFunc // stops the notifier
	ran   chan struct{}      // closed when its Run has returned
}

// envOptions change how newEnv builds the system.
type envOptions struct {
	auth mustgather.Authorizer
	// readTimeout is the server's ReadTimeout; zero is the binary's.
	readTimeout time.Duration
	// sendBuffer, when set, is the server's socket send buffer, so that a
	// client that does not read fills it soon.
	sendBuffer int
	// nats is the server to use; nil starts one.
	nats *natsserver.Server
}

func newEnv(t testing.TB, cfg Config, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	if o.nats == nil {
		o.nats = testenv.NATS(t)
	}
	js, err := jetstream.New(testenv.Conn(t, o.nats))
	if err != nil {
		t.Fatal(err)
	}
	store, err := jsstore.New(ctx, js, jsstore.Config{Bucket: testenv.Name("gatherings"), LeaseBucket: testenv.Name("leases")})
	if err != nil {
		t.Fatal(err)
	}
	archives, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(ctx, js, natsbus.Config{Stream: testenv.Name("events"), SubjectPrefix: testenv.Name("mg")})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	d := api.Deps{Logger: log, Store: store, Archives: archives, Events: bus, Registry: reg, Auth: o.auth, Policy: mustgather.DefaultPolicy()}
	d.Policy.Servers = []string{"prod", "down"}
	e := &env{t: t, store: store, ran: make(chan struct{})}
	e.n = New(cfg, Deps{Logger: log, Store: store, Changes: store, Guard: d.Guard(), Registry: reg})
	d.Routes = e.n.Routes()
	e.srv = httptest.NewUnstartedServer(api.NewServer(d))
	// The binary's limits (cmd/must-gather-functions/run.go).
	e.srv.Config.ReadHeaderTimeout = 10 * time.Second
	e.srv.Config.ReadTimeout = 10*time.Second + api.DefaultBodyTimeout
	if o.readTimeout > 0 {
		e.srv.Config.ReadTimeout = o.readTimeout
	}
	e.srv.Config.IdleTimeout = 2 * time.Minute
	e.srv.Config.MaxHeaderBytes = 64 << 10
	e.srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if o.sendBuffer > 0 {
		e.srv.Listener = smallBuffers{e.srv.Listener, o.sendBuffer}
	}
	e.srv.Start()
	e.base = e.srv.URL
	runCtx, stop := context.WithCancel(ctx)
	e.stop = stop
	go func() {
		defer close(e.ran)
		if err := e.n.Run(runCtx); err != nil {
			t.Errorf("notifier: %v", err)
		}
	}()
	t.Cleanup(func() {
		stop()
		<-e.ran
		e.srv.Close()
	})
	testenv.Eventually(t, 10*time.Second, "the notifier to be ready", func() bool { return e.n.Ready(ctx) == nil })
	return e
}

// testWriter logs into the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// smallBuffers gives every accepted connection a small send buffer.
type smallBuffers struct {
	net.Listener
	size int
}

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// create stores a new gathering.
func (e *env) create(t testing.TB, name string) mustgather.Gathering {
	t.Helper()
	g, err := e.store.Create(context.Background(), mustgather.NewGathering(mustgather.Request{CustomName: name, Timeout: "1m"}, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// claim, progress and finish drive a gathering as the runner and the
// recorder do.
func (e *env) claim(t testing.TB, id mustgather.ID) mustgather.Gathering {
	t.Helper()
	g, err := e.store.Claim(context.Background(), id, time.Now())
	if err != nil {
		t.Error(err)
	}
	return g
}

func (e *env) apply(t testing.TB, u mustgather.Update) mustgather.Gathering {
	t.Helper()
	u.Time = time.Now()
	g, err := e.store.Apply(context.Background(), u)
	if err != nil {
		t.Error(err)
	}
	return g
}

func progress(id mustgather.ID, seq uint64, output string) mustgather.Update {
	return mustgather.Update{ID: id, Seq: seq, Status: mustgather.StatusInProgress, ExecOutput: output}
}

func completed(id mustgather.ID, seq uint64) mustgather.Update {
	return mustgather.Update{ID: id, Seq: seq, Status: mustgather.StatusCompleted, ArchiveName: fmt.Sprintf("must-gather-%d.tar.gz", id), ArchiveSize: 42}
}

func failed(id mustgather.ID, seq uint64) mustgather.Update {
	return mustgather.Update{ID: id, Seq: seq, Status: mustgather.StatusError, Reason: "it broke", ExecOutput: "it broke"}
}

// frame is one SSE block.
type frame = testenv.SSEFrame

// sse is one open event stream read by a goroutine of its own.
type sse struct {
	resp   *http.Response
	frames chan frame // closed when the stream ends
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error // why the stream ended
}

// open opens path as an event stream with the header pairs, and fails the
// test unless it is answered 200 with the stream's headers.
func (e *env) open(t testing.TB, path string, header ...string) *sse {
	t.Helper()
	resp, cancel := e.get(t, path, header...)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET %s: %s %q, want %q", path, k, got, want)
		}
	}
	s := &sse{resp: resp, frames: make(chan frame, 4096), cancel: cancel}
	go s.read()
	t.Cleanup(s.close)
	return s
}

// get sends GET path with the header pairs; the returned function ends the
// request.
func (e *env) get(t testing.TB, path string, header ...string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp, func() { cancel(); resp.Body.Close() }
}

func (s *sse) close() { s.cancel() }

func (s *sse) read() {
	err := testenv.ReadSSE(s.resp.Body, s.frames)
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.frames)
}

// next returns the next frame, or false when the stream has ended.
func (s *sse) next(t testing.TB, timeout time.Duration) (frame, bool) {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		return f, ok
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
		return frame{}, false
	}
}

// connected reads the start of the stream: the retry field and the
// ": connected" comment.
func (s *sse) connected(t testing.TB) {
	t.Helper()
	f, ok := s.next(t, 10*time.Second)
	if !ok || f.Retry != "3000" || len(f.Comments) != 1 || f.Comments[0] != "connected" || f.IsEvent() {
		t.Fatalf("stream starts with %+v, want retry: 3000 and : connected", f)
	}
}

// update is an event's gathering with its id as its Revision.
type update struct {
	mustgather.Gathering
	data string
}

// event returns the next event, skipping heartbeats, and fails the test
// if the stream ends first.
func (s *sse) event(t testing.TB, timeout time.Duration) update {
	t.Helper()
	u, ok := s.nextEvent(t, timeout)
	if !ok {
		t.Fatalf("stream ended (%v), want an event", s.ended())
	}
	return u
}

// nextEvent returns the next event, skipping heartbeats, or false when the
// stream ends.
func (s *sse) nextEvent(t testing.TB, timeout time.Duration) (update, bool) {
	t.Helper()
	for {
		f, ok := s.next(t, timeout)
		if !ok {
			return update{}, false
		}
		if !f.IsEvent() {
			continue
		}
		if f.Event != "gathering" {
			t.Fatalf("event type %q, want gathering", f.Event)
		}
		rev, err := strconv.ParseUint(f.ID, 10, 64)
		if err != nil {
			t.Fatalf("event id %q: %v", f.ID, err)
		}
		var g mustgather.Gathering
		dec := json.NewDecoder(strings.NewReader(f.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&g); err != nil {
			t.Fatalf("event data %q: %v", f.Data, err)
		}
		g.Revision = rev
		return update{Gathering: g, data: f.Data}, true
	}
}

// end waits for the stream to end, failing the test on an event.
func (s *sse) end(t testing.TB, timeout time.Duration) {
	t.Helper()
	if u, ok := s.nextEvent(t, timeout); ok {
		t.Fatalf("event %d (%s) where the stream should end", u.Revision, u.Status)
	}
	if err := s.ended(); !errors.Is(err, io.EOF) {
		t.Errorf("stream ended with %v, want the server's end of the response", err)
	}
}

func (s *sse) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// asServed is g's JSON as GET /must-gather/{id} answers it, on one line.
func (e *env) asServed(t testing.TB, id mustgather.ID) string {
	t.Helper()
	resp, cancel := e.get(t, "/must-gather/"+id.String())
	defer cancel()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /must-gather/%d: %d %s %v", id, resp.StatusCode, b, err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// metric returns the value of the sample line that starts with name in
// /metrics, or "" if there is none.
func (e *env) metric(t testing.TB, name string) string {
	t.Helper()
	resp, cancel := e.get(t, "/metrics")
	defer cancel()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
