package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// BenchmarkAPI measures the API through its real handler on jsstore and
// natsbus over an embedded nats-server, with 10,000 gatherings stored.
func BenchmarkAPI(b *testing.B) {
	const records = 10_000
	e := newEnv(b, func(_ *env, d *Deps) { d.Logger = nil }, withLocalLinks(b, nil, ""))
	ctx := context.Background()
	for i := range records {
		r := mustgather.Request{CustomName: fmt.Sprintf("plan-%d", i), Image: "quay.io/konveyor/forklift-must-gather", Timeout: "30m"}
		if _, err := e.store.Create(ctx, mustgather.NewGathering(r, testNow)); err != nil {
			b.Fatal(err)
		}
	}
	done := e.create(`{"custom-name": "done"}`)
	e.finish(done.ID, mustgather.StatusCompleted, map[string]string{"namespaces/openshift-mtv/plan.yaml": "kind: Plan\n"})
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
	b.Run("GET /must-gather/{id}/url", func(b *testing.B) {
		serve(b, func(int) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/url", nil)
		}, http.StatusOK)
	})
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/url", nil))
	var l link
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
		b.Fatal(err)
	}
	signed := strings.TrimPrefix(l.URL, "http://example.com")
	b.Run("GET /must-gather/{id}/data with a signed link", func(b *testing.B) {
		serve(b, func(int) *http.Request { return httptest.NewRequest(http.MethodGet, signed, nil) }, http.StatusOK)
	})
	b.Run("GET /must-gather/{id}/data", func(b *testing.B) {
		serve(b, func(int) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/must-gather/"+done.ID.String()+"/data", nil)
		}, http.StatusOK)
	})
}
