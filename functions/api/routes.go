package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// addRoutes is the API's table of contents. A GET pattern also answers HEAD.
func addRoutes(mux *http.ServeMux, d Deps, m *metrics) {
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, m.instrument(pattern, h)) }

	handle("POST /must-gather", handleCreate(d))
	handle("GET /must-gather", handleList(d))
	handle("GET /must-gather/{id}", handleGet(d))
	handle("GET /must-gather/{id}/data", handleData(d))

	handle("GET /openapi.yaml", handleOpenAPI())
	handle("GET /healthz", handleHealthz())
	handle("GET /readyz", handleReadyz(d))
	if d.Registry != nil {
		handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
	}
}
