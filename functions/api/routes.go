package api

import "net/http"

// addRoutes is the API's table of contents. A GET pattern also answers HEAD.
func addRoutes(mux *http.ServeMux, d Deps, m *metrics) {
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, m.instrument(pattern, h)) }

	handle("POST /must-gather", handleCreate(d))
	handle("GET /must-gather", handleList(d))
	handle("GET /must-gather/{id}", handleGet(d))
	handle("GET /must-gather/{id}/data", handleData(d))

	handle("GET /openapi.yaml", handleOpenAPI())
	addOpsRoutes(handle, d.Logger, d.Ready, d.Registry) // GET /healthz, /readyz, /metrics
}
