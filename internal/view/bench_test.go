package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// replay passes gs as a store's feed passes its records while it catches
// up, and then nothing. It lets BenchmarkViewMemory measure the view alone:
// an embedded nats-server in the same process frees and fills its caches
// while a view is built, which moves the heap by more than the view.
type replay []mustgather.Gathering

func (r replay) Follow(ctx context.Context, fn func(mustgather.Write) error) error {
	for i := range r {
		// As decoded from the store: the strings a record keeps are its
		// own.
		g := r[i]
		g.CustomName, g.Server, g.Status = strings.Clone(g.CustomName), strings.Clone(g.Server), mustgather.Status(strings.Clone(string(g.Status)))
		if err := fn(mustgather.Write{Revision: uint64(i + 1), Gathering: &g}); err != nil {
			return err
		}
	}
	if err := fn(mustgather.Write{CaughtUp: true}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (r replay) Revision(context.Context) (uint64, error) { return uint64(len(r)), nil }

func (r replay) WrittenAfter(_ context.Context, rev uint64) (bool, error) {
	return rev < uint64(len(r)), nil
}

// indented encodes g as the API answers it: indented, without HTML
// escapes, ending with a newline.
func indented(g mustgather.Gathering) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// BenchmarkViewMemory reports the heap a view holds per record (B/record),
// and how long it takes to catch up (ns/record), at 100,000 records: as a
// POST stores them, and completed with an exec-output of 1 KiB and of
// 8 KiB (over Config.OutputBytes, so kept without its body).
func BenchmarkViewMemory(b *testing.B) {
	for _, tt := range []struct {
		name   string
		output int
	}{{"new", 0}, {"completed-1KiB-output", 1 << 10}, {"completed-8KiB-output", 8 << 10}} {
		b.Run(tt.name+"/records=100000", func(b *testing.B) {
			const n = 100_000
			gs := make([]mustgather.Gathering, n)
			for i := range gs {
				g := mustgather.NewGathering(mustgather.Request{CustomName: fmt.Sprintf("plan-%d", i), Image: "quay.io/konveyor/forklift-must-gather", Timeout: "30m"}, time.Now())
				g.ID = mustgather.ID(i + 1)
				if tt.output > 0 {
					g.Status, g.ArchiveName, g.ArchiveSize = mustgather.StatusCompleted, mustgather.ArchiveName(g.ID, g.CustomName), 123456789
					g.ExecOutput = string(bytes.Repeat([]byte("x"), tt.output))
				}
				gs[i] = g
			}
			var perRecord, perCatchUp float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				start := time.Now()
				v := view.New(replay(gs), indented, view.Config{})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- v.Run(ctx) }()
				testenv.Eventually(b, time.Minute, "the view has caught up", func() bool { return v.Ready(ctx) == nil })
				perCatchUp = float64(time.Since(start).Nanoseconds()) / n
				runtime.GC()
				runtime.ReadMemStats(&after)
				if v.Len() != n {
					b.Fatalf("the view holds %d records of %d", v.Len(), n)
				}
				perRecord = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
				cancel()
				<-done
			}
			b.ReportMetric(perRecord, "B/record")
			b.ReportMetric(perCatchUp, "ns/record")
		})
	}
}
