// Package api is the HTTP API of must-gather-functions: it starts
// gatherings, lists and shows them, and streams their archives. NewServer
// builds the whole API as one http.Handler; the binary that serves it, with
// its timeouts and configuration, is wired elsewhere.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/presign"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// MaxBodyBytes caps the body of a request that starts a gathering. The
// largest valid request is well under it.
const MaxBodyBytes = 64 << 10

// DefaultBodyTimeout is how long the body of a request that starts a
// gathering may take to arrive in full when Deps.BodyTimeout is zero. A
// valid body is small; a client that takes longer is stalled or hostile.
const DefaultBodyTimeout = 30 * time.Second

// Deps is what the API needs from the outside world. Store, Archives and
// Events are required; every other field has a working zero value.
type Deps struct {
	Logger   *slog.Logger            // nil discards logs
	Store    mustgather.Store        // keeps gatherings
	Archives mustgather.ArchiveStore // keeps their archives
	Events   mustgather.Events       // announces new gatherings to runners
	Policy   mustgather.Policy       // limits a request is validated against
	Now      func() time.Time        // nil means time.Now
	// BodyTimeout bounds reading the body of a request that starts a
	// gathering, from when the handler starts; a body still incomplete then
	// is answered 408. Zero means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Ready reports whether the dependencies can serve; nil means always
	// ready.
	Ready func(ctx context.Context) error
	// Registry receives the HTTP metrics and is served on /metrics; nil
	// means no metrics and no /metrics.
	Registry *prometheus.Registry
	// Auth decides who may call the API: a cluster-admin for the
	// gatherings, anyone allowed to get /metrics for the metrics. nil turns
	// authorization off.
	Auth mustgather.Authorizer
	// ForwardedToken takes the bearer token from X-Forwarded-Access-Token
	// when a request has it, as an OAuth proxy in front of the API sends it.
	ForwardedToken bool
	// CORSOrigins are the origins (https://console.example.com) whose
	// pages may call the API from a browser; see CheckOrigins. Empty: no
	// CORS headers at all.
	CORSOrigins []string
	// PostRate is how many gatherings one user (the token's username, or
	// the remote address with authorization off) may start a minute, after
	// a burst of PostBurst (at least 1); more are answered 429. Zero means
	// no limit. The count is this process's: each replica keeps its own.
	PostRate  int
	PostBurst int
	// Web serves the web page on GET / and its files on GET
	// /static/{file}, without authorization (see package web); nil serves
	// no page.
	Web http.Handler
	// Links makes the download links of GET /must-gather/{id}/url, and,
	// if it is also a presign.Verifier, checks the signed downloads made
	// with them. nil: no such route.
	Links presign.Linker
	// TrustForwarded takes the scheme and host of a local download link,
	// when no public URL is configured, from X-Forwarded-Proto and
	// X-Forwarded-Host, as a proxy in front of the API sets them.
	TrustForwarded bool
	// View, when set and running, answers GET /must-gather and GET
	// /must-gather/{id} from memory once it has caught up with the store
	// (see package view); without it, or while it is behind, they read the
	// store. It keeps gatherings as EncodeGathering makes them.
	View *view.View
	// Routes are handlers served beside the API's own, such as the
	// notifier's event streams, under the same metrics, CORS and JSON
	// errors. NewOpsHandler serves them too.
	Routes []Route
}

// Route is a handler that the API serves beside its own; it authorizes
// its requests itself, as the API does, through Deps.Guard.
type Route struct {
	Pattern string // a ServeMux pattern with a method: "GET /events"
	Handler http.Handler
}

// NewServer returns the API as an http.Handler. It panics when Store,
// Archives or Events is nil, as that is a wiring mistake, not a runtime
// condition.
func NewServer(d Deps) http.Handler {
	if d.Store == nil || d.Archives == nil || d.Events == nil {
		panic("api.NewServer: Store, Archives and Events are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.BodyTimeout <= 0 {
		d.BodyTimeout = DefaultBodyTimeout
	}
	m := newMetrics(d.Registry)
	mux := http.NewServeMux()
	addRoutes(mux, d, m, newLimiter(d.PostRate, d.PostBurst, d.Now))
	return withCORS(d.CORSOrigins, jsonFallback(mux, m))
}

// jsonFallback answers the requests that match no route (404) or match a
// route only by path (405) with the API's JSON error body instead of the
// mux's plain text, keeping the mux's status and Allow header.
//
// A path that is not clean (//must-gather, /must-gather/x/../1) is no
// route either: the mux would redirect it to the clean path with an HTML
// body. An API has one path per resource, and answers a misspelt one, such
// as a trailing slash, with 404; this is a misspelling too, so it gets 404
// naming the clean path.
func jsonFallback(mux *http.ServeMux, m *metrics) http.Handler {
	unmatched := m.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clean, ok := cleanPath(r); !ok {
			msg := "no such resource: " + r.URL.EscapedPath()
			if u, err := url.Parse(clean); err == nil {
				if _, pattern := mux.Handler(&http.Request{Method: r.Method, Host: r.Host, URL: u}); pattern != "" {
					msg += "; did you mean " + clean + "?"
				}
			}
			writeJSON(w, http.StatusNotFound, errorBody{Error: msg})
			return
		}
		h, _ := mux.Handler(r)
		rec := &statusRecorder{header: w.Header()}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			writeJSON(w, http.StatusNotFound, errorBody{Error: "no such resource: " + r.URL.Path})
		case http.StatusMethodNotAllowed:
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed; allowed: " + w.Header().Get("Allow")})
		default:
			// A redirect from /tree to /tree/, which only a subtree
			// pattern makes (the API has none): its Location is in place,
			// the mux's HTML body is not kept.
			w.WriteHeader(rec.status)
		}
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if _, clean := cleanPath(r); pattern == "" || !clean {
			unmatched.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath returns r's path as the mux matches it: without empty, "." and
// ".." segments, keeping a trailing slash. ok reports whether r's path is
// that already. CONNECT paths are not paths and always ok.
func cleanPath(r *http.Request) (clean string, ok bool) {
	p := r.URL.EscapedPath()
	if r.Method == http.MethodConnect || isClean(p) {
		return p, true
	}
	clean = path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, clean == p
}

// isClean reports, without allocating, whether path.Clean keeps p as it is
// (but for a trailing slash, which cleanPath keeps): p starts with a slash
// and has no empty, "." or ".." segment. Every request passes here; only
// the few it cannot vouch for go through path.Clean.
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// statusRecorder keeps the status a handler writes and drops its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
