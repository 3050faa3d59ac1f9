package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// BenchmarkAPI measures the API through its real handler on jsstore and
// natsbus over an embedded nats-server, with 10,000 gatherings stored.
func BenchmarkAPI(b *testing.B) {
	const records = 10_000
	e := newEnv(b, func(_ *env, d *Deps) { d.Logger = nil })
	ctx := context.Background()
	for i := range records {
		r := mustgather.Request{CustomName: fmt.Sprintf("plan-%d", i), Image: "quay.io/konveyor/forklift-must-gather", Timeout: "30m"}
		if _, err := e.store.Create(ctx, mustgather.NewGathering(r, testNow)); err != nil {
			b.Fatal(err)
		}
	}
	serve := func(b *testing.B, req func(i int) *http.Request, want int) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, req(i))
			if w.Code != want {
				b.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
			}
			i++
		}
	}
	body := []byte(`{"custom-name": "bench", "image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}`)
	b.Run("POST /must-gather", func(b *testing.B) {
		serve(b, func(int) *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/must-gather", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, http.StatusCreated)
	})
	b.Run("GET /must-gather/{id}", func(b *testing.B) {
		serve(b, func(i int) *http.Request {
			return httptest.NewRequest(http.MethodGet, fmt.Sprintf("/must-gather/%d", 1+i*7919%records), nil)
		}, http.StatusOK)
	})
	b.Run("GET /must-gather/{custom-name}", func(b *testing.B) {
		serve(b, func(i int) *http.Request {
			return httptest.NewRequest(http.MethodGet, fmt.Sprintf("/must-gather/plan-%d", i*7919%records), nil)
		}, http.StatusOK)
	})
}
