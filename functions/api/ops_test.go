package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthzAnswers200WhileServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *env, d *Deps) {
		d.Ready = func(context.Context) error { return errors.New("store unreachable") }
	})
	resp := e.do(http.MethodGet, "/healthz", "", nil)
	if resp.status != http.StatusOK || string(resp.body) != "{\n  \"status\": \"ok\"\n}\n" {
		t.Errorf("GET /healthz: %d %s, want 200 {\"status\": \"ok\"} even when not ready", resp.status, resp.body)
	}
}

func TestReadyzFollowsTheReadyDependency(t *testing.T) {
	t.Parallel()
	t.Run("ready when the store answers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t) // Ready is the jsstore's Ping
		if resp := e.do(http.MethodGet, "/readyz", "", nil); resp.status != http.StatusOK {
			t.Errorf("GET /readyz: %d %s, want 200", resp.status, resp.body)
		}
	})
	t.Run("not ready answers 503 with the error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(_ *env, d *Deps) {
			d.Ready = func(context.Context) error { return errors.New("ping bucket must-gather: nats: timeout") }
		})
		resp := e.do(http.MethodGet, "/readyz", "", nil)
		if resp.status != http.StatusServiceUnavailable {
			t.Fatalf("GET /readyz: %d, want 503", resp.status)
		}
		if diff := cmp.Diff(errorBody{Error: "not ready: ping bucket must-gather: nats: timeout"}, errorOf(t, resp)); diff != "" {
			t.Errorf("body (-want +got):\n%s", diff)
		}
	})
	t.Run("a nil Ready is always ready", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(_ *env, d *Deps) { d.Ready = nil })
		if resp := e.do(http.MethodGet, "/readyz", "", nil); resp.status != http.StatusOK {
			t.Errorf("GET /readyz: %d %s, want 200", resp.status, resp.body)
		}
	})
	t.Run("not ready once NATS is gone", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.nats.Stop()
		if resp := e.do(http.MethodGet, "/readyz", "", nil); resp.status != http.StatusServiceUnavailable {
			t.Errorf("GET /readyz: %d %s, want 503", resp.status, resp.body)
		}
	})
}

func TestMetricsCountRequestsByRouteAndCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create(`{}`)
	e.do(http.MethodGet, "/must-gather/1", "", nil)
	e.do(http.MethodGet, "/must-gather/2", "", nil)
	e.do(http.MethodGet, "/must-gather/2", "", nil)
	e.do(http.MethodGet, "/no/such/path", "", nil)
	resp := e.do(http.MethodGet, "/metrics", "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.status)
	}
	for _, want := range []string{
		`mustgather_api_http_requests_total{code="201",route="POST /must-gather"} 1`,
		`mustgather_api_http_requests_total{code="200",route="GET /must-gather/{id}"} 1`,
		`mustgather_api_http_requests_total{code="404",route="GET /must-gather/{id}"} 2`,
		`mustgather_api_http_requests_total{code="404",route="unmatched"} 1`,
		`mustgather_api_http_request_duration_seconds_count{code="201",route="POST /must-gather"} 1`,
	} {
		if !strings.Contains(string(resp.body), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestNoRegistryMeansNoMetricsRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *env, d *Deps) { d.Registry = nil })
	if resp := e.do(http.MethodGet, "/metrics", "", nil); resp.status != http.StatusNotFound {
		t.Errorf("GET /metrics: %d, want 404", resp.status)
	}
	if resp := e.do(http.MethodGet, "/healthz", "", nil); resp.status != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", resp.status)
	}
}

func TestTwoServersShareARegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := Deps{Store: e.store, Archives: e.archives, Events: e.bus, Registry: e.reg}
	second := NewServer(d) // must not panic on the collectors the first server registered
	e.do(http.MethodGet, "/no/such/path", "", nil)
	rec := httptest.NewRecorder()
	second.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/no/such/path", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("second server: GET /no/such/path: %d, want 404", rec.Code)
	}
	// Both servers count into the one registry's collectors.
	resp := e.do(http.MethodGet, "/metrics", "", nil)
	if want := `mustgather_api_http_requests_total{code="404",route="unmatched"} 2`; !strings.Contains(string(resp.body), want+"\n") {
		t.Errorf("metrics lack %s:\n%s", want, resp.body)
	}
}

func TestAProcessWithoutTheAPIAnswersHealthAsTheAPIDoes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var notReady error
	h := NewOpsHandler(Deps{Ready: func(context.Context) error { return notReady }, Registry: reg})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/healthz"); rec.Code != http.StatusOK || rec.Body.String() != "{\n  \"status\": \"ok\"\n}\n" {
		t.Errorf("GET /healthz: %d %q", rec.Code, rec.Body)
	}
	if rec := get("/readyz"); rec.Code != http.StatusOK || rec.Body.String() != "{\n  \"status\": \"ready\"\n}\n" {
		t.Errorf("GET /readyz when ready: %d %q", rec.Code, rec.Body)
	}
	notReady = errors.New("nats: CLOSED")
	rec := get("/readyz")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Body.String() != "{\n  \"error\": \"not ready: nats: CLOSED\"\n}\n" {
		t.Errorf("GET /readyz when not ready: %d %s %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if rec := get("/metrics"); rec.Code != http.StatusOK {
		t.Errorf("GET /metrics: %d", rec.Code)
	}
	if rec := get("/must-gather"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /must-gather: %d, want 404 without the API", rec.Code)
	}
}
