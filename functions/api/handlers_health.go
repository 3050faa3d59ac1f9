package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// OpenAPI is the OpenAPI 3.0 document of the API, as served on
// /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/yaml")
		h.Set("Content-Length", strconv.Itoa(len(OpenAPI)))
		_, _ = w.Write(OpenAPI)
	})
}

type healthBody struct {
	Status string `json:"status"`
}

// handleHealthz answers 200 for as long as the process serves: restarting
// it would not help a dependency that is down.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
	})
}

// readyTimeout bounds one readiness check: a store that takes longer is
// as good as unreachable, and the probe should get its answer within its
// own timeout (give the probe at least 3s).
const readyTimeout = 2 * time.Second

// handleReadyz answers 503 while ready fails, so that no traffic is sent
// to an instance that cannot reach its stores.
func handleReadyz(log *slog.Logger, ready func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			log.WarnContext(ctx, "not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, healthBody{Status: "ready"})
	})
}

// addOpsRoutes adds liveness, readiness and, with a registry, metrics: the
// operations endpoints every process serves, with or without the API. Of
// d it uses Logger, Ready, Registry, and Auth and ForwardedToken for
// /metrics.
func addOpsRoutes(handle func(pattern string, h http.Handler), d Deps) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	ready := d.Ready
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	handle("GET /healthz", handleHealthz())
	handle("GET /readyz", handleReadyz(d.Logger, ready))
	if d.Registry != nil {
		h := promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry})
		handle("GET /metrics", requireAccess(d, mustgather.AccessMetrics, h))
	}
}

// NewOpsHandler serves only /healthz, /readyz and /metrics, as NewServer
// does, and d.Routes, for a process that runs functions but not the API.
// Of d it uses only Logger, Ready, Registry, Auth, ForwardedToken,
// CORSOrigins and Routes: with Auth, /metrics needs a token allowed to get
// it, as in the API.
func NewOpsHandler(d Deps) http.Handler {
	m := newMetrics(d.Registry)
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, m.instrument(pattern, h)) }
	for _, rt := range d.Routes {
		handle(rt.Pattern, rt.Handler)
	}
	addOpsRoutes(handle, d)
	return withCORS(d.CORSOrigins, jsonFallback(mux, m))
}
