package api

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// testPolicy is the Policy of every test server.
var testPolicy = mustgather.Policy{
	DefaultTimeout: 30 * time.Minute,
	MaxTimeout:     2 * time.Hour,
	Servers:        []string{"prod"},
}

// testNow is when every test gathering is created, so that golden files do
// not change from run to run; it is the seed example's created-at.
var testNow = time.Date(2021, 6, 30, 15, 19, 17, 514594773, time.FixedZone("", 2*60*60))

// env is an API server on real stores: gatherings in JetStream KV on an
// embedded nats-server, archives in a directory, events on a JetStream
// stream, each under names of its own.
type env struct {
	t        testing.TB
	nats     *natsserver.Server
	js       jetstream.JetStream
	store    *jsstore.Store
	archives *dirstore.Store
	bus      *natsbus.Bus
	reg      *prometheus.Registry
	log      *syncBuffer
	view     *view.View // nil with withoutView
	storeCfg jsstore.Config
	deps     Deps
	handler  http.Handler
	srv      *httptest.Server
}

// newEnv starts an env; opts may change the Deps before the server is built.
func newEnv(t testing.TB, opts ...func(*env, *Deps)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, nats: testenv.NATS(t), reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	js, err := jetstream.New(testenv.Conn(t, e.nats))
	if err != nil {
		t.Fatal(err)
	}
	e.js = js
	e.storeCfg = jsstore.Config{Bucket: testenv.Name("gatherings"), LeaseBucket: testenv.Name("leases")}
	e.store, err = jsstore.New(ctx, js, e.storeCfg)
	if err != nil {
		t.Fatal(err)
	}
	e.archives, err = dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.archives.Close() })
	e.bus, err = natsbus.New(ctx, js, natsbus.Config{Stream: testenv.Name("events"), SubjectPrefix: testenv.Name("mg")})
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{
		Logger:   slog.New(slog.NewTextHandler(e.log, nil)),
		Store:    e.store,
		Archives: e.archives,
		Events:   e.bus,
		Policy:   testPolicy,
		Now:      func() time.Time { return testNow },
		Ready:    e.store.Ping,
		Registry: e.reg,
	}
	e.view = view.New(e.store, EncodeGathering, view.Config{})
	d.View = e.view
	for _, o := range opts {
		o(e, &d)
	}
	if d.View != nil {
		runView(t, d.View)
	}
	e.deps = d
	e.handler = NewServer(d)
	// The server has the binary's limits (cmd/must-gather-functions/run.go),
	// so that a test client meets the deadlines a real client meets, and
	// net/http's own complaints land in the test's log.
	e.srv = httptest.NewUnstartedServer(e.handler)
	bodyTimeout := d.BodyTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = DefaultBodyTimeout
	}
	e.srv.Config.ReadHeaderTimeout = 10 * time.Second
	e.srv.Config.ReadTimeout = 10*time.Second + bodyTimeout
	e.srv.Config.IdleTimeout = 2 * time.Minute
	e.srv.Config.MaxHeaderBytes = 64 << 10
	if d.Logger != nil {
		e.srv.Config.ErrorLog = slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn)
	}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// runView runs v until the test ends and waits until it has caught up.
func runView(t testing.TB, v *view.View) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	testenv.Eventually(t, 10*time.Second, "the view has caught up", func() bool { return v.Ready(ctx) == nil })
}

// withoutView serves every read from the store.
func withoutView(e *env, d *Deps) { e.view, d.View = nil, nil }

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the env's server. contentType "" sends none.
func (e *env) do(method, path, contentType string, body []byte, header ...string) response {
	e.t.Helper()
	req := e.request(method, path, contentType, body, header...)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) request(method, path, contentType string, body []byte, header ...string) *http.Request {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// create posts a JSON request with header and returns the gathering it
// started.
func (e *env) create(jsonBody string, header ...string) mustgather.Gathering {
	e.t.Helper()
	resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(jsonBody), header...)
	if resp.status != http.StatusCreated {
		e.t.Fatalf("POST %s: %d %s", jsonBody, resp.status, resp.body)
	}
	var g mustgather.Gathering
	if err := json.Unmarshal(resp.body, &g); err != nil {
		e.t.Fatal(err)
	}
	return g
}

// claim moves a gathering to inprogress, as a runner does.
func (e *env) claim(id mustgather.ID) {
	e.t.Helper()
	if _, err := e.store.Claim(context.Background(), id, testNow.Add(time.Second)); err != nil {
		e.t.Fatal(err)
	}
}

// finish ends a gathering in status with an archive of files, stored as the
// runner stores it, and returns the archive's bytes. With no files it ends
// without an archive.
func (e *env) finish(id mustgather.ID, status mustgather.Status, files map[string]string) []byte {
	e.t.Helper()
	ctx := context.Background()
	e.claim(id)
	g, err := e.store.Get(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	u := mustgather.Update{
		ID:         id,
		Seq:        1,
		Status:     status,
		Time:       testNow.Add(4 * time.Minute),
		ExecOutput: "[must-gather      ] OUT Using must-gather plug-in image: quay.io/konveyor/forklift-must-gather\n",
	}
	var archive []byte
	if len(files) > 0 {
		archive = tarGz(e.t, files)
		u.ArchiveName = mustgather.ArchiveName(id, g.CustomName)
		n, err := e.archives.Put(ctx, mustgather.ArchiveKey(id, u.ArchiveName), bytes.NewReader(archive))
		if err != nil {
			e.t.Fatal(err)
		}
		u.ArchiveSize = n
	}
	if status == mustgather.StatusError {
		u.Reason = "gathering pod failed"
		u.ExecOutput += u.Reason + "\n"
	}
	if _, err := e.store.Apply(ctx, u); err != nil {
		e.t.Fatal(err)
	}
	return archive
}

// tarGz builds a gzip-compressed tar of files, as a must-gather archive is.
func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: testNow}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// golden compares got with testdata/golden/<name>.json, or rewrites that
// file under -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
	}
}

// errorOf decodes an error answer, rejecting fields it does not know.
func errorOf(t testing.TB, resp response) errorBody {
	t.Helper()
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json; body %s", ct, resp.body)
	}
	var b errorBody
	dec := json.NewDecoder(bytes.NewReader(resp.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body %s: %v", resp.body, err)
	}
	return b
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
