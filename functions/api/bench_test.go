package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// benchClients is how many clients send requests at once in BenchmarkAPI.
const benchClients = 32

// benchRecords are the record counts BenchmarkAPI measures at. The records
// of a count are stored the first time a benchmark of that count runs, so
// that -bench 'records=1000$' costs none of the 100,000.
var benchRecords = []int{1_000, 10_000, 100_000}

// BenchmarkAPI measures the API over real HTTP on loopback, benchClients
// clients at once, on jsstore over an embedded nats-server, at each of
// benchRecords: BenchmarkAPI/<op>/records=<n>. Beside ns/op (the wall time
// per request) each reports req/s, the p50 and p99 latency in ms, and the
// CPU time of the whole process per request (cpu-µs/op). The
// bare-get and bare-list ops are the baseline of the same run: a bare
// net/http handler answering the bytes of a GET and of a list of 200;
// bare-jetstream-post the JetStream calls a POST makes, made directly.
// BenchmarkViewMemory (package view) states the memory per record.
func BenchmarkAPI(b *testing.B) {
	fixtures := map[int]*benchFixture{}
	top := b
	fixture := func(n int) *benchFixture {
		if f, ok := fixtures[n]; ok {
			return f
		}
		// The fixture outlives the sub-benchmark that builds it: it is
		// built, and cleaned up, on the benchmark that shares it.
		f := newBenchFixture(top, n)
		fixtures[n] = f
		return f
	}
	ops := []struct {
		name string
		run  func(b *testing.B, f *benchFixture)
	}{
		{"GET-by-id", func(b *testing.B, f *benchFixture) {
			load(b, f.client, f.e.srv.URL, func(i int) string { return fmt.Sprintf("/must-gather/%d", 1+i*7919%f.n) }, http.StatusOK)
		}},
		{"GET-by-name", func(b *testing.B, f *benchFixture) {
			load(b, f.client, f.e.srv.URL, func(i int) string { return fmt.Sprintf("/must-gather/plan-%d", i*7919%f.n) }, http.StatusOK)
		}},
		{"list-200", func(b *testing.B, f *benchFixture) {
			load(b, f.client, f.e.srv.URL, func(int) string { return "/must-gather?limit=200" }, http.StatusOK)
		}},
		{"POST", func(b *testing.B, f *benchFixture) {
			loadPOST(b, f)
		}},
		{"bare-jetstream-post", func(b *testing.B, f *benchFixture) {
			loadBarePOST(b, f)
		}},
		{"bare-get", func(b *testing.B, f *benchFixture) {
			load(b, f.client, f.bareGet.URL, func(int) string { return "/" }, http.StatusOK)
		}},
		{"bare-list", func(b *testing.B, f *benchFixture) {
			load(b, f.client, f.bareList.URL, func(int) string { return "/" }, http.StatusOK)
		}},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			for _, n := range benchRecords {
				b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) { op.run(b, fixture(n)) })
			}
		})
	}
}

// benchFixture is an API with n gatherings stored, plan-0 to plan-<n-1>,
// and the bare handlers answering the same bytes as its GET and list.
type benchFixture struct {
	n        int
	e        *env
	client   *http.Client
	bareGet  *httptest.Server
	bareList *httptest.Server
}

func newBenchFixture(b *testing.B, n int) *benchFixture {
	f := &benchFixture{n: n, e: newEnv(b, func(_ *env, d *Deps) { d.Logger = nil })}
	start := time.Now()
	storeRecords(b, f.e, n)
	b.Logf("%d records stored in %s", n, time.Since(start).Round(time.Millisecond))
	f.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	b.Cleanup(f.client.CloseIdleConnections)
	get, list := f.answer(b, "/must-gather/1"), f.answer(b, "/must-gather?limit=200")
	f.bareGet, f.bareList = bareServer(b, get), bareServer(b, list)
	return f
}

// answer returns the body of a GET of path, which must answer 200.
func (f *benchFixture) answer(b *testing.B, path string) []byte {
	resp, err := f.client.Get(f.e.srv.URL + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v: %s", path, resp.StatusCode, err, body)
	}
	return body
}

// bareServer answers every request with body, as the API answers JSON,
// and nothing else: the fastest an HTTP server here can answer it.
func bareServer(b *testing.B, body []byte) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", fmt.Sprint(len(body)))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
	}))
	b.Cleanup(s.Close)
	return s
}

// storeRecords stores n gatherings, plan-0 to plan-<n-1> with ids 1 to n,
// as the store writes them (the gathering record, the custom-name index,
// the ids stream's sequence), published asynchronously: 100,000 in
// seconds, where n Creates one after another take minutes. The records are
// read back through the store to prove the layout.
func storeRecords(b *testing.B, e *env, n int) {
	ctx := context.Background()
	bucket := "$KV." + e.storeCfg.Bucket + "."
	idSubject := "_MUST_GATHER_IDS." + e.storeCfg.Bucket
	for i := range n {
		g := mustgather.NewGathering(mustgather.Request{CustomName: fmt.Sprintf("plan-%d", i), Image: "quay.io/konveyor/forklift-must-gather", Timeout: "30m"}, testNow)
		g.ID = mustgather.ID(i + 1)
		data, err := json.Marshal(struct {
			Gathering mustgather.Gathering `json:"gathering"`
			Seq       uint64               `json:"seq"`
		}{g, 0})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []struct {
			subject string
			data    []byte
		}{
			{idSubject, nil},
			{bucket + "g." + g.ID.String(), data},
			{bucket + "name." + base64.RawURLEncoding.EncodeToString([]byte(g.CustomName)), []byte(g.ID.String())},
		} {
			for {
				_, err := e.js.PublishAsync(m.subject, m.data)
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					<-e.js.PublishAsyncComplete()
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				break
			}
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("records not stored within 5 minutes")
	}
	if g, err := e.store.GetByName(ctx, fmt.Sprintf("plan-%d", n-1)); err != nil || g.ID != mustgather.ID(n) {
		b.Fatalf("GetByName of the last record: %+v, %v", g, err)
	}
	if g, err := e.store.Create(ctx, mustgather.NewGathering(mustgather.Request{Timeout: "30m"}, testNow)); err != nil || g.ID != mustgather.ID(n+1) {
		b.Fatalf("Create after %d records: %+v, %v", n, g, err)
	}
}

// load sends b.N GETs of base+path(i), benchClients at once, each of which
// must answer want, and reports req/s and the p50 and p99 latency.
func load(b *testing.B, c *http.Client, base string, path func(i int) string, want int) {
	drive(b, func(i int) error {
		resp, err := c.Get(base + path(i))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != want {
			err = fmt.Errorf("GET %s: status %d, want %d", path(i), resp.StatusCode, want)
		}
		return err
	})
}

// loadPOST starts b.N gatherings, benchClients at once.
func loadPOST(b *testing.B, f *benchFixture) {
	body := []byte(`{"custom-name": "bench", "image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}`)
	drive(b, func(int) error {
		resp, err := f.client.Post(f.e.srv.URL+"/must-gather", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusCreated {
			err = fmt.Errorf("POST: status %d", resp.StatusCode)
		}
		return err
	})
}

// loadBarePOST makes, b.N times, benchClients at once, the JetStream
// calls a POST makes, without HTTP and without the API's code: publish to
// the ids stream, put the unfinished mark, create the record, read and
// write the custom-name index, publish the gathering.requested event. They
// go to buckets of their own, so that the API's records stay as they are.
func loadBarePOST(b *testing.B, f *benchFixture) {
	ctx := context.Background()
	bucket := testenv.Name("bare")
	if _, err := jsstore.New(ctx, f.e.js, jsstore.Config{Bucket: bucket, LeaseBucket: bucket + "-leases"}); err != nil {
		b.Fatal(err)
	}
	kv, err := f.e.js.KeyValue(ctx, bucket)
	if err != nil {
		b.Fatal(err)
	}
	g := mustgather.NewGathering(mustgather.Request{CustomName: "bench", Image: "quay.io/maufart/forklift-must-gather", Timeout: "15m"}, testNow)
	record, err := json.Marshal(struct {
		Gathering mustgather.Gathering `json:"gathering"`
	}{g})
	if err != nil {
		b.Fatal(err)
	}
	event, err := eventing.NewRequested(g)
	if err != nil {
		b.Fatal(err)
	}
	eventData, err := json.Marshal(event)
	if err != nil {
		b.Fatal(err)
	}
	idSubject, nameKey := "_MUST_GATHER_IDS."+bucket, "name."+base64.RawURLEncoding.EncodeToString([]byte(g.CustomName))
	drive(b, func(int) error {
		ack, err := f.e.js.Publish(ctx, idSubject, nil)
		if err != nil {
			return err
		}
		id := strconv.FormatUint(ack.Sequence, 10)
		if _, err := kv.Put(ctx, "open."+id, nil); err != nil {
			return err
		}
		if _, err := kv.Create(ctx, "g."+id, record); err != nil {
			return err
		}
		if _, err := kv.Get(ctx, nameKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		if _, err := kv.Put(ctx, nameKey, []byte(id)); err != nil {
			return err
		}
		_, err = f.e.js.Publish(ctx, f.e.bus.RequestedSubject(), eventData)
		return err
	})
}

// drive calls do(i) for i in [0, b.N) from benchClients goroutines and
// reports the latency percentiles and the rate.
func drive(b *testing.B, do func(i int) error) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	var wg sync.WaitGroup
	for range benchClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N || failed.Load() != nil {
					return
				}
				t := time.Now()
				if err := do(i); err != nil {
					failed.Store(&err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime returns the CPU time the process has used, user and system: the
// clients, the server and the embedded nats-server together. Per request
// it says what a request costs even when other work on the machine leaves
// the process only part of the cores, which req/s does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAPIDownloads measures the download link and the download of a
// small archive through the API's handler, in process, with 10,000
// gatherings stored.
func BenchmarkAPIDownloads(b *testing.B) {
	e := newEnv(b, func(_ *env, d *Deps) { d.Logger = nil }, withLocalLinks(b, nil, ""))
	storeRecords(b, e, 10_000)
	done := e.create(`{"custom-name": "done"}`)
	e.finish(done.ID, mustgather.StatusCompleted, map[string]string{"namespaces/openshift-mtv/plan.yaml": "kind: Plan\n"})
	serve := func(b *testing.B, req func() *http.Request) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, req())
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("GET /must-gather/{id}/url", func(b *testing.B) {
		serve(b, func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/url", nil)
		})
	})
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/url", nil))
	var l link
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
		b.Fatal(err)
	}
	signed := strings.TrimPrefix(l.URL, "http://example.com")
	b.Run("GET /must-gather/{id}/data with a signed link", func(b *testing.B) {
		serve(b, func() *http.Request { return httptest.NewRequest(http.MethodGet, signed, nil) })
	})
	b.Run("GET /must-gather/{id}/data", func(b *testing.B) {
		serve(b, func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/data", nil)
		})
	})
}
