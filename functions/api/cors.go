package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The CORS answer: the methods and request headers the API uses, the
// answer headers a page may read, and how long a browser may reuse a
// preflight.
const (
	corsMethods       = "GET, HEAD, POST, DELETE"
	corsHeaders       = "Authorization, Content-Type, If-Match, Last-Event-ID, X-Forwarded-Access-Token"
	corsExposeHeaders = "Location, Retry-After, WWW-Authenticate, Content-Disposition"
	corsMaxAge        = "600"
)

// CheckOrigins reports the first of origins that is not an origin as a
// browser sends it in the Origin header: scheme://host[:port], lowercase,
// with no path. A wildcard is refused: CORS is only for configured
// origins.
func CheckOrigins(origins []string) error {
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || o != strings.ToLower(o) {
			return fmt.Errorf("%q is not an origin such as https://console.example.com (lowercase scheme://host[:port], no path, no wildcard)", o)
		}
	}
	return nil
}

// withCORS lets the pages of origins call h from a browser: it answers
// their preflight requests (OPTIONS with Access-Control-Request-Method),
// which carry no token, and marks h's answers to them as readable. Any
// other origin gets no CORS header at all, so the browser keeps its page
// from reading the answer. No origins: h as it is.
func withCORS(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin == "" || !slices.Contains(origins, origin) {
			h.ServeHTTP(w, r)
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Add("Vary", "Access-Control-Request-Method")
			hd.Add("Vary", "Access-Control-Request-Headers")
			hd.Set("Access-Control-Allow-Methods", corsMethods)
			hd.Set("Access-Control-Allow-Headers", corsHeaders)
			hd.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		hd.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		h.ServeHTTP(w, r)
	})
}
