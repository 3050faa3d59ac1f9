package jsstore

import (
	"context"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// BenchmarkStore measures the calls the API makes on every request against
// a real embedded nats-server over loopback TCP. List runs over 10,000
// records with 1 KiB of exec output each.
func BenchmarkStore(b *testing.B) {
	js := jetStream(b, testenv.NATS(b))
	ctx := context.Background()
	output := strings.Repeat("x", 1<<10)

	fill := func(b *testing.B, st *Store, n int) {
		b.Helper()
		for i := range n {
			g := gathering("bench-" + mustgather.ID(i%100).String())
			g.ExecOutput = output
			mustCreate(b, st, g)
		}
	}

	b.Run("Create", func(b *testing.B) {
		st := newStore(b, js, Config{})
		g := gathering("bench")
		for b.Loop() {
			if _, err := st.Create(ctx, g); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("Get", func(b *testing.B) {
		st := newStore(b, js, Config{})
		fill(b, st, 100)
		var i uint64
		for b.Loop() {
			i++
			if _, err := st.Get(ctx, mustgather.ID(i%100+1)); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("GetByName", func(b *testing.B) {
		st := newStore(b, js, Config{})
		fill(b, st, 100)
		for b.Loop() {
			if _, err := st.GetByName(ctx, "bench-42"); err != nil {
				b.Fatal(err)
			}
		}
	})

	const records = 10_000
	st := newStore(b, js, Config{})
	fill(b, st, records)

	for _, bc := range []struct {
		name   string
		filter mustgather.Filter
		want   int
	}{
		{"List/all-10000", mustgather.Filter{}, records},
		{"List/limit-20-of-10000", mustgather.Filter{Limit: 20}, 20},
		{"List/name-and-limit-20-of-10000", mustgather.Filter{CustomName: "bench-7", Limit: 20}, 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				list, err := st.List(ctx, bc.filter)
				if err != nil {
					b.Fatal(err)
				}
				if len(list) != bc.want {
					b.Fatalf("List returned %d gatherings, want %d", len(list), bc.want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/records, "ns/record")
		})
	}

	b.Run("Unfinished/10000-open", func(b *testing.B) {
		for b.Loop() {
			ids, err := st.Unfinished(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(ids) != records {
				b.Fatalf("Unfinished returned %d ids, want %d", len(ids), records)
			}
		}
	})
}
