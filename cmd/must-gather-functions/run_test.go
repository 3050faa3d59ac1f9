package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runAsServer()
	}
	testenv.Main(m)
}

// system is the binary's run function serving in this process.
type system struct {
	base    string // http://127.0.0.1:port
	natsURL string
	log     *logBuffer // everything it logged
	cancel  context.CancelFunc
	done    chan error
}

// start runs the whole system with env on top of test defaults: every
// function, embedded NATS on a random port, data in dataDir. A test sees
// its log in the test log; a benchmark keeps it out of its output.
func start(t testing.TB, dataDir string, env map[string]string) *system {
	t.Helper()
	vars := map[string]string{
		"PORT": "0", "NATS_EMBEDDED_PORT": "-1", "DATA_DIR": dataDir, "LOG_LEVEL": "warn",
		"RUNNER_FINISH_GRACE": "5s", "SHUTDOWN_TIMEOUT": "30s", "PROCESS_TEMP_DIR": t.TempDir(),
	}
	for k, v := range env {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &system{log: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	var logTo io.Writer = s.log
	if tt, ok := t.(*testing.T); ok {
		logTo = io.MultiWriter(&testLog{t: tt}, s.log)
	}
	go func() {
		err := run(ctx, []string{"must-gather-functions"}, func(k string) string { return vars[k] }, pw, logTo)
		pw.Close()
		s.done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "must-gather-functions: embedded NATS on "); ok {
			s.natsURL = u
		}
		if u, ok := strings.CutPrefix(line, "must-gather-functions: listening on "); ok {
			s.base = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if s.base == "" {
		cancel()
		t.Fatalf("system did not start: %v", <-s.done)
	}
	t.Cleanup(s.stop)
	return s
}

// logBuffer keeps what a system logs, for tests that read it afterwards.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *system) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	<-s.done
}

type gathering struct {
	ID          uint64 `json:"id"`
	CustomName  string `json:"custom-name"`
	Status      string `json:"status"`
	ArchiveName string `json:"archive-name"`
	ArchiveSize int64  `json:"archive-size"`
	ExecOutput  string `json:"exec-output"`
	Timeout     string `json:"timeout"`
	Reason      string `json:"reason"`
}

func (s *system) post(t *testing.T, contentType string, body io.Reader) gathering {
	t.Helper()
	resp, err := http.Post(s.base+"/must-gather", contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	var g gathering
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); loc != fmt.Sprintf("/must-gather/%d", g.ID) {
		t.Errorf("Location %q for id %d", loc, g.ID)
	}
	return g
}

func (s *system) get(t *testing.T, ref string) (gathering, int) {
	t.Helper()
	resp, err := http.Get(s.base + "/must-gather/" + url.PathEscape(ref))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var g gathering
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
			t.Fatal(err)
		}
	}
	return g, resp.StatusCode
}

func (s *system) waitEnded(t *testing.T, id uint64) gathering {
	t.Helper()
	return s.waitEndedWithin(t, id, 60*time.Second)
}

func (s *system) waitEndedWithin(t *testing.T, id uint64, within time.Duration) gathering {
	t.Helper()
	var g gathering
	testenv.Eventually(t, within, fmt.Sprintf("gathering %d to end", id), func() bool {
		var code int
		g, code = s.get(t, fmt.Sprint(id))
		return code == http.StatusOK && (g.Status == "completed" || g.Status == "error")
	})
	return g
}

// download fetches /data and returns the archive's files.
func (s *system) download(t *testing.T, g gathering) map[string]string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/must-gather/%d/data", s.base, g.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET data: %d %s", resp.StatusCode, b)
	}
	if got, want := resp.Header.Get("Content-Disposition"), fmt.Sprintf("attachment; filename=%q", g.ArchiveName); got != want {
		t.Errorf("Content-Disposition %q, want %q", got, want)
	}
	if resp.ContentLength != g.ArchiveSize {
		t.Errorf("Content-Length %d, archive-size %d", resp.ContentLength, g.ArchiveSize)
	}
	return archivetest.ReadTarGz(t, resp.Body)
}

const gatherCommand = `mkdir -p namespaces/openshift-mtv/crs && echo "kind: Plan" > namespaces/openshift-mtv/crs/plan.yaml && echo "gathered plan"`

func TestTheSeedAPIRunsAGatheringToADownloadableArchive(t *testing.T) {
	stores := map[string]func(t *testing.T) map[string]string{
		"the local archive directory": func(t *testing.T) map[string]string { return nil },
		"S3 (MinIO)": func(t *testing.T) map[string]string {
			m := testenv.MinIO(t)
			return map[string]string{
				"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
				"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("e2e"), "S3_USE_TLS": "false",
			}
		},
	}
	for name, storeEnv := range stores {
		t.Run("with "+name, func(t *testing.T) {
			t.Parallel()
			s := start(t, t.TempDir(), storeEnv(t))

			var mp bytes.Buffer
			mw := multipart.NewWriter(&mp)
			_ = mw.WriteField("custom-name", "plan:multipart")
			_ = mw.WriteField("command", gatherCommand)
			_ = mw.Close()
			bodies := []struct {
				kind        string
				contentType string
				body        string
			}{
				{"json", "application/json", fmt.Sprintf(`{"custom-name": "plan:json", "command": %q, "timeout": "15m"}`, gatherCommand)},
				{"form", "application/x-www-form-urlencoded", url.Values{"custom-name": {"plan:form"}, "command": {gatherCommand}}.Encode()},
				{"multipart", mw.FormDataContentType(), mp.String()},
			}
			for _, b := range bodies {
				g := s.post(t, b.contentType, strings.NewReader(b.body))
				if g.Status != "new" || g.CustomName != "plan:"+b.kind {
					t.Errorf("%s: created %+v", b.kind, g)
				}
				done := s.waitEnded(t, g.ID)
				if done.Status != "completed" {
					t.Fatalf("%s: %s\n%s", b.kind, done.Status, done.ExecOutput)
				}
				if !strings.Contains(done.ExecOutput, "gathered plan") {
					t.Errorf("%s: exec-output %q", b.kind, done.ExecOutput)
				}
				byName, code := s.get(t, "plan:"+b.kind)
				if code != http.StatusOK || byName.ID != g.ID {
					t.Errorf("%s: by custom-name: %d %+v", b.kind, code, byName)
				}
				files := s.download(t, done)
				if files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" || !strings.Contains(files["must-gather.logs"], "gathered plan") {
					t.Errorf("%s: archive holds %v", b.kind, files)
				}
			}
		})
	}
}

func TestIdsAndStatusesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, nil)
	first := s.post(t, "application/json", strings.NewReader(`{"command": "echo one"}`))
	done := s.waitEnded(t, first.ID)
	s.stop()

	s = start(t, dir, nil)
	after, code := s.get(t, fmt.Sprint(first.ID))
	if code != http.StatusOK || after.Status != done.Status || after.ExecOutput != done.ExecOutput {
		t.Errorf("after restart: %d %+v, before %+v", code, after, done)
	}
	second := s.post(t, "application/json", strings.NewReader(`{"command": "echo two"}`))
	if second.ID <= first.ID {
		t.Errorf("id after restart %d, not above %d", second.ID, first.ID)
	}
}

func TestShutdownLeavesNoGatheringStuck(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, nil)
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo working; sleep 120", "timeout": "10m"}`))
	testenv.Eventually(t, 30*time.Second, "the gathering to start", func() bool {
		cur, _ := s.get(t, fmt.Sprint(g.ID))
		return strings.Contains(cur.ExecOutput, "working")
	})
	s.stop() // as on SIGTERM

	s = start(t, dir, nil)
	got, _ := s.get(t, fmt.Sprint(g.ID))
	if got.Status != "error" || !strings.Contains(got.ExecOutput, "shut down") {
		t.Errorf("after shutdown: %s\n%s", got.Status, got.ExecOutput)
	}
}

func TestEventsAreReadableByAnIndependentCloudEventsReader(t *testing.T) {
	s := start(t, t.TempDir(), nil)
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A plain core NATS subscriber: it sees what any NATS tool would see.
	sub, err := nc.SubscribeSync("mustgather.>")
	if err != nil {
		t.Fatal(err)
	}
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo hello"}`))
	seen := map[string]bool{}
	for !seen[eventing.TypeCompleted] {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("events seen %v: %v", seen, err)
		}
		var e event.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("not a structured CloudEvent: %v: %s", err, m.Data)
		}
		if e.Subject() != fmt.Sprint(g.ID) {
			continue
		}
		seen[e.Type()] = true
	}
	for _, typ := range []string{eventing.TypeRequested, eventing.TypeStarted, eventing.TypeCompleted} {
		if !seen[typ] {
			t.Errorf("no %s event; saw %v", typ, seen)
		}
	}
}

func TestBadConfigurationIsReportedNotPanicked(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"an unknown function", map[string]string{"FUNCTIONS": "api,cron"}, `unknown function "cron"`},
		{"a timeout that is not a duration", map[string]string{"DEFAULT_TIMEOUT": "soon"}, "DEFAULT_TIMEOUT"},
		{"an s3 store without endpoint", map[string]string{"ARCHIVE_STORE": "s3"}, "S3_ENDPOINT"},
		{"a TLS certificate without its key", map[string]string{"HTTP_TLS_CERT_FILE": "tls.crt"}, "HTTP_TLS_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), []string{"x"}, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run error %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestTheFunctionsRunAsSeparateProcessesOnExternalNATSAndS3(t *testing.T) {
	nats := testenv.NATS(t)
	m := testenv.MinIO(t)
	shared := map[string]string{
		"NATS_URL": nats.ClientURL(), "ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("split"), "S3_USE_TLS": "false", "HTTP_ADDRESS": "127.0.0.1:0",
		"AUTH": "off",
	}
	with := func(fns string) map[string]string { return functionsEnv(shared, fns) }
	apiProc := start(t, t.TempDir(), with("api"))
	workers := start(t, t.TempDir(), with("runner,recorder"))

	g := apiProc.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"custom-name": "split", "command": %q}`, gatherCommand)))
	done := apiProc.waitEnded(t, g.ID)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	if files := apiProc.download(t, done); files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" {
		t.Errorf("archive holds %v", files)
	}
	// The worker process has no API, only health and metrics.
	resp, err := http.Get(workers.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("worker /readyz: %d", resp.StatusCode)
	}
	resp, err = http.Get(workers.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `mustgather_runner_gatherings_finished_total{result="completed"} 1`) {
		t.Errorf("worker metrics lack the finished gathering:\n%.2000s", body)
	}
}

func TestServerNamesComeFromKUBE_CONTEXTS(t *testing.T) {
	cfg, err := loadConfig([]string{"x"}, func(k string) string {
		return map[string]string{"KUBE_CONTEXTS": "prod=admin@prod, staging ,"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.API.Policy.Servers, ","); got != "prod,staging" {
		t.Errorf("servers %q, want prod,staging", got)
	}
	if _, err := loadConfig([]string{"x"}, func(k string) string {
		return map[string]string{"KUBE_CONTEXTS": "=ctx"}[k]
	}); err == nil || !strings.Contains(err.Error(), "KUBE_CONTEXTS") {
		t.Errorf("a malformed entry: %v", err)
	}
}

// functionsEnv is shared with FUNCTIONS set to fns: the settings of one
// process of a system whose functions run in several.
func functionsEnv(shared map[string]string, fns string) map[string]string {
	env := map[string]string{"FUNCTIONS": fns}
	for k, v := range shared {
		env[k] = v
	}
	return env
}
