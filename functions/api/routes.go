package api

import (
	"net/http"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// addRoutes is the API's table of contents. A GET pattern also answers HEAD.
func addRoutes(mux *http.ServeMux, d Deps, m *metrics, posts *limiter) {
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, m.instrument(pattern, h)) }

	admin := func(h http.Handler) http.Handler { return requireAccess(d, mustgather.AccessAdmin, h) }
	token := func(h http.Handler) http.Handler { return requireToken(d, h) }

	// A create, get and download is reviewed against the gathering's own
	// cluster (its server), once the handler knows which that is.
	handle("POST /must-gather", token(handleCreate(d, posts)))
	handle("GET /must-gather", admin(handleList(d)))
	handle("GET /must-gather/{id}", token(handleGet(d)))
	handle("DELETE /must-gather/{id}", token(handleDelete(d, m.cancels())))
	// A download with a signed link's parameters needs no token.
	handle("GET /must-gather/{id}/data", signedOr(d, token(handleData(d))))
	if d.Links != nil {
		handle("GET /must-gather/{id}/url", token(handleURL(d)))
	}

	// The web page's static files need no token: they hold no data, and
	// the page asks its user for one when the API answers 401. {$} keeps
	// every other path an API 404.
	if d.Web != nil {
		handle("GET /{$}", d.Web)
		handle("GET /static/{file}", d.Web)
	}

	for _, rt := range d.Routes {
		handle(rt.Pattern, rt.Handler)
	}

	handle("GET /openapi.yaml", handleOpenAPI())
	addOpsRoutes(handle, d) // GET /healthz, /readyz, /metrics
}
