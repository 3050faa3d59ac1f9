package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// benchCount is the integer in the environment variable name, or def.
func benchCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// percentile returns the p-th percentile (0 to 100) of ds in ms.
func percentile(ds []time.Duration, p float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i]) / float64(time.Millisecond)
}

// BenchmarkEventPath measures, for MGF_BENCH_GATHERINGS (default 200)
// gatherings of `true` posted one after another (process gatherer), the
// time from sending the POST to its answer (post-), to an SSE client of GET
// /events seeing the gathering inprogress (claim-) and completed (final-),
// p50 and p99. The baseline (rtt-) is the round trip of GET /healthz to the
// process that answers the POST. embedded is the whole system in one
// process with embedded NATS; separate runs the api, runner, recorder and
// notifier functions each in an OS process of its own on one NATS server,
// the events read from the notifier's process, as they are deployed.
func BenchmarkEventPath(b *testing.B) {
	n := benchCount("MGF_BENCH_GATHERINGS", 200)
	b.Run("embedded", func(b *testing.B) {
		s := start(b, b.TempDir(), map[string]string{"API_POST_RATE": "0"})
		eventPath(b, n, s.base, s.base)
	})
	b.Run("separate", func(b *testing.B) {
		nats := testenv.NATS(b)
		dir := b.TempDir()
		base := map[string]string{}
		for _, fn := range []string{"recorder", "notifier", "runner", "api"} {
			c := startChild(b, map[string]string{
				"FUNCTIONS": fn, "NATS_URL": nats.ClientURL(), "AUTH": "off", "API_POST_RATE": "0",
				"ARCHIVE_DIR": filepath.Join(dir, "archives"), "PROCESS_TEMP_DIR": b.TempDir(),
			})
			base[fn] = c.base
		}
		eventPath(b, n, base["api"], base["notifier"])
	})
}

// eventPath posts n gatherings to the API at api one after another, each
// once the one before has ended, and reports the times of BenchmarkEventPath,
// read from the SSE stream GET /events of events.
func eventPath(b *testing.B, n int, api, events string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, events+"/events", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET /events: %s", resp.Status)
	}
	// Each status change is timed as it arrives, not when the loop below
	// gets to it.
	type seen struct {
		id     uint64
		status string
		at     time.Time
	}
	frames := make(chan testenv.SSEFrame, 64)
	changes := make(chan seen, 1024)
	go func() { _ = testenv.ReadSSE(resp.Body, frames); close(frames) }()
	go func() {
		defer close(changes)
		for f := range frames {
			at := time.Now()
			var g gathering
			if f.IsEvent() && json.Unmarshal([]byte(f.Data), &g) == nil {
				changes <- seen{g.ID, g.Status, at}
			}
		}
	}()
	client := &http.Client{Timeout: time.Minute}
	rtt := func() time.Duration {
		t0 := time.Now()
		resp, err := client.Get(api + "/healthz")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0)
	}
	rtt() // a connection to reuse

	var posts, claims, finals, rtts []time.Duration
	for b.Loop() {
		posts, claims, finals, rtts = posts[:0], claims[:0], finals[:0], rtts[:0]
		for range n {
			rtts = append(rtts, rtt())
			t0 := time.Now()
			id, err := postCommand(client, api, "true")
			if err != nil {
				b.Fatal(err)
			}
			posts = append(posts, time.Since(t0))
			var claimed time.Time
			timeout := time.After(time.Minute)
		wait:
			for {
				select {
				case c, ok := <-changes:
					if !ok {
						b.Fatal("the event stream ended")
					}
					if c.id != id {
						continue
					}
					switch c.status {
					case "inprogress":
						claimed = c.at
					case "completed", "error":
						if claimed.IsZero() {
							claimed = c.at // the claim's event came after the final one, or not at all
						}
						claims = append(claims, claimed.Sub(t0))
						finals = append(finals, c.at.Sub(t0))
						break wait
					}
				case <-timeout:
					b.Fatalf("gathering %d did not end within a minute", id)
				}
			}
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"post", posts}, {"claim", claims}, {"final", finals}, {"rtt", rtts}} {
		b.ReportMetric(percentile(m.ds, 50), m.name+"-p50-ms")
		b.ReportMetric(percentile(m.ds, 99), m.name+"-p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkColdStart builds the binary and measures, MGF_BENCH_STARTS
// times (default 10) for each FUNCTIONS value, the time from exec to the
// first 200 of /readyz, with embedded NATS and archives in a new local
// folder each time; median-ms is the median. The baseline is exec to exit
// of `must-gather-functions list -h`, the start of the process and the Go
// runtime; it also reports the binary's size.
func BenchmarkColdStart(b *testing.B) {
	starts := benchCount("MGF_BENCH_STARTS", 10)
	bin := filepath.Join(b.TempDir(), "must-gather-functions")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	median := func(b *testing.B, once func() time.Duration) {
		var ds []time.Duration
		for b.Loop() {
			ds = ds[:0]
			for range starts {
				ds = append(ds, once())
			}
		}
		b.ReportMetric(percentile(ds, 50), "median-ms")
		b.ReportMetric(0, "ns/op")
	}

	b.Run("baseline", func(b *testing.B) {
		median(b, func() time.Duration {
			t0 := time.Now()
			_ = exec.Command(bin, "list", "-h").Run() // -h exits 2 after the usage
			return time.Since(t0)
		})
		b.ReportMetric(float64(info.Size())/(1<<20), "binary-MiB")
	})

	for _, functions := range []string{"api", "runner", "recorder", "notifier", "trigger", "all"} {
		b.Run("FUNCTIONS="+functions, func(b *testing.B) {
			median(b, func() time.Duration { return coldStart(b, bin, functions) })
		})
	}
}

// coldStart starts bin with FUNCTIONS=functions and returns how long it
// took to answer 200 to /readyz.
func coldStart(b *testing.B, bin, functions string) time.Duration {
	port, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	env := []string{
		"FUNCTIONS=" + functions, "PORT=" + strconv.Itoa(port), "NATS_EMBEDDED_PORT=-1", "DATA_DIR=" + dir,
		"LOG_LEVEL=warn", "PROCESS_TEMP_DIR=" + dir, "PATH=" + os.Getenv("PATH"), "HOME=" + dir,
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	client := &http.Client{Timeout: time.Second}
	t0 := time.Now()
	p, err := testenv.StartProcess(dir, "server", env, []string{bin})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	for deadline := t0.Add(time.Minute); time.Now().Before(deadline); {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0)
			}
		}
		select {
		case <-p.Done():
			b.Fatalf("FUNCTIONS=%s exited: %v\n%s", functions, p.Err(), p.Tail(20))
		case <-time.After(time.Millisecond):
		}
	}
	b.Fatalf("FUNCTIONS=%s not ready within a minute:\n%s", functions, strings.TrimSpace(p.Tail(20)))
	return 0
}
