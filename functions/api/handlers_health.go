package api

import (
	"context"
	_ "embed"
	"net/http"
	"strconv"
	"time"
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

// handleReadyz answers 503 while d.Ready fails, so that no traffic is sent
// to an instance that cannot reach its stores.
func handleReadyz(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := d.Ready(ctx); err != nil {
			d.Logger.WarnContext(ctx, "not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, healthBody{Status: "ready"})
	})
}
