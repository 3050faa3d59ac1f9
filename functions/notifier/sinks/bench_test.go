package sinks_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// BenchmarkDelivery publishes b.N final events and waits until both of two
// signing replicas' sinks have each: it reports the events delivered a
// second and the delay from an event's publication to its receipt.
func BenchmarkDelivery(b *testing.B) {
	e := newEnv(b)
	a, c := sinkstest.New(b, nil), sinkstest.New(b, nil)
	cfg := e.cfg
	cfg.Sinks, cfg.Secret = []string{a.URL, c.URL}, secret
	e.run(b, e.notifier(b, e.connect(b), cfg, nil))
	e.run(b, e.notifier(b, e.connect(b), cfg, nil))
	published := map[string]time.Time{}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		_, u := e.settle(b, "bench-"+strconv.Itoa(i), mustgather.StatusCompleted)
		ev, err := eventing.NewStatus(u, eventing.SourceRunner)
		if err != nil {
			b.Fatal(err)
		}
		published[ev.ID()] = time.Now()
		if err := e.bus.Updated(context.Background(), u); err != nil {
			b.Fatal(err)
		}
	}
	testenv.Eventually(b, 10*time.Minute, "every event at both sinks", func() bool {
		return len(a.Count()) == b.N && len(c.Count()) == b.N
	})
	elapsed := time.Since(start)
	b.StopTimer()
	var delays []time.Duration
	for _, r := range []*sinkstest.Receiver{a, c} {
		for _, d := range r.Deliveries() {
			delays = append(delays, d.At.Sub(published[d.Event.ID()]))
		}
	}
	slices.Sort(delays)
	q := func(p float64) float64 { return float64(delays[int(p*float64(len(delays)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
