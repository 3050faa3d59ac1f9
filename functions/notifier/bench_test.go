package notifier

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkFanOutToAThousandStreams measures how long one change takes
// from the write to the store until each of 1,000 streams on real HTTP
// connections has it: p50 and p99 over every stream and change.
func BenchmarkFanOutToAThousandStreams(b *testing.B) {
	const clients = 1000
	e := newEnv(b, Config{MaxClients: clients + 10}, envOptions{})
	g := e.create(b, "bench")
	e.claim(b, g.ID)

	type arrival struct {
		rev uint64
		at  time.Time
	}
	arrivals := make(chan arrival, clients*4)
	streams := make([]*sse, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := range streams {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			streams[i] = e.open(b, "/events")
			streams[i].connected(b)
		})
	}
	wg.Wait()
	for _, s := range streams {
		go func() {
			for f := range s.frames {
				if rev, err := strconv.ParseUint(f.ID, 10, 64); err == nil {
					arrivals <- arrival{rev, time.Now()}
				}
			}
		}()
	}

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		want := e.apply(b, progress(g.ID, uint64(i+1), "x")).Revision
		for n := 0; n < clients; {
			select {
			case a := <-arrivals:
				if a.rev == want {
					lat = append(lat, a.at.Sub(start))
					n++
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("change %d: %d of %d streams had it after 30s", i, n, clients)
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
