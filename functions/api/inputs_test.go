package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

const console = "https://console.example.com"

func TestCORSIsOnlyForConfiguredOrigins(t *testing.T) {
	t.Parallel()
	preflight := []string{"Origin", console, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type"}
	tests := []struct {
		name          string
		origins       []string
		method, path  string
		header        []string
		status        int
		allowOrigin   string
		allowMethods  string
		exposeHeaders string
	}{
		{"a preflight from a configured origin is answered with the API's methods and headers",
			[]string{"https://other.example.com", console}, http.MethodOptions, "/must-gather", preflight,
			http.StatusNoContent, console, corsMethods, ""},
		{"a request from a configured origin may be read by its page",
			[]string{console}, http.MethodGet, "/must-gather", []string{"Origin", console},
			http.StatusOK, console, "", corsExposeHeaders},
		{"a preflight from another origin gets no CORS headers",
			[]string{console}, http.MethodOptions, "/must-gather", []string{"Origin", "https://evil.example.com", "Access-Control-Request-Method", "POST"},
			http.StatusMethodNotAllowed, "", "", ""},
		{"a request from another origin gets no CORS headers",
			[]string{console}, http.MethodGet, "/must-gather", []string{"Origin", "https://evil.example.com"},
			http.StatusOK, "", "", ""},
		{"an origin that differs only by scheme gets no CORS headers",
			[]string{console}, http.MethodGet, "/must-gather", []string{"Origin", "http://console.example.com"},
			http.StatusOK, "", "", ""},
		{"without configured origins a preflight gets no CORS headers",
			nil, http.MethodOptions, "/must-gather", preflight,
			http.StatusMethodNotAllowed, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(_ *env, d *Deps) { d.CORSOrigins = tt.origins })
			resp := e.do(tt.method, tt.path, "", nil, tt.header...)
			if resp.status != tt.status {
				t.Errorf("status %d, want %d; body %s", resp.status, tt.status, resp.body)
			}
			got := map[string]string{
				"Access-Control-Allow-Origin":   resp.header.Get("Access-Control-Allow-Origin"),
				"Access-Control-Allow-Methods":  resp.header.Get("Access-Control-Allow-Methods"),
				"Access-Control-Allow-Headers":  resp.header.Get("Access-Control-Allow-Headers"),
				"Access-Control-Expose-Headers": resp.header.Get("Access-Control-Expose-Headers"),
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":   tt.allowOrigin,
				"Access-Control-Allow-Methods":  tt.allowMethods,
				"Access-Control-Allow-Headers":  "",
				"Access-Control-Expose-Headers": tt.exposeHeaders,
			}
			if tt.allowMethods != "" {
				want["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match, Last-Event-ID, X-Forwarded-Access-Token"
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("CORS headers (-want +got):\n%s", diff)
			}
			if tt.origins != nil && !strings.Contains(strings.Join(resp.header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q, want Origin: the answer depends on it", resp.header.Values("Vary"))
			}
		})
	}
}

func TestCheckOriginsTakesOnlyOrigins(t *testing.T) {
	t.Parallel()
	for _, o := range []string{"https://console.example.com", "http://localhost:9000"} {
		if err := CheckOrigins([]string{o}); err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	for _, o := range []string{"*", "console.example.com", "https://console.example.com/", "https://console.example.com/x", "https://Console.example.com", "ftp://x"} {
		if err := CheckOrigins([]string{o}); err == nil {
			t.Errorf("%s accepted, want it refused", o)
		}
	}
}

func TestWithAuthOnAPreflightNeedsNoTokenButTheRequestDoes(t *testing.T) {
	k := kube.Start(t)
	e := newEnv(t, withAuth(t, map[string]*rest.Config{"": k.Admin}), func(_ *env, d *Deps) { d.CORSOrigins = []string{console} })
	resp := e.do(http.MethodOptions, "/must-gather", "", nil,
		"Origin", console, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if resp.status != http.StatusNoContent || resp.header.Get("Access-Control-Allow-Origin") != console {
		t.Errorf("preflight without a token: %d %v, want 204 allowing %s", resp.status, resp.header, console)
	}
	// The page can read the 401, and so send its user to log in.
	resp = e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{}`), "Origin", console)
	if resp.status != http.StatusUnauthorized || resp.header.Get("Access-Control-Allow-Origin") != console {
		t.Errorf("POST without a token: %d %v, want 401 allowing %s", resp.status, resp.header, console)
	}
	resp = e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{}`), "Origin", console, "Authorization", "Bearer "+k.Admin.BearerToken)
	if resp.status != http.StatusCreated || resp.header.Get("Access-Control-Allow-Origin") != console {
		t.Errorf("POST as cluster-admin: %d %v %s, want 201 allowing %s", resp.status, resp.header, resp.body, console)
	}
}

// clock is a time that tests move.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPostsOverTheLimitAreAnswered429WithRetryAfter(t *testing.T) {
	t.Parallel()
	c := &clock{t: testNow}
	e := newEnv(t, func(_ *env, d *Deps) { d.PostRate, d.PostBurst, d.Now = 2, 3, c.now })
	for range 3 {
		e.create(`{}`)
	}
	resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{}`))
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "30" {
		t.Fatalf("the fourth POST at once: %d Retry-After %q %s, want 429 after 30 s", resp.status, resp.header.Get("Retry-After"), resp.body)
	}
	want := errorBody{Error: "too many gatherings requested: at most 2 a minute per user after a burst of 3; retry in 30s"}
	if diff := cmp.Diff(want, errorOf(t, resp)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	_, router := loadOpenAPI(t)
	req := e.request(http.MethodPost, "/must-gather", "application/json", []byte(`{}`))
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: authOff}
	if err := validateResponse(in, resp); err != nil {
		t.Errorf("the 429 does not match the OpenAPI document: %v", err)
	}
	if resp := e.do(http.MethodGet, "/must-gather", "", nil); resp.status != http.StatusOK {
		t.Errorf("a GET over the POST limit: %d, want 200: only POSTs count", resp.status)
	}
	c.add(20 * time.Second)
	if resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{}`)); resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "10" {
		t.Errorf("20 s later: %d Retry-After %q, want 429 after 10 s", resp.status, resp.header.Get("Retry-After"))
	}
	c.add(10 * time.Second)
	e.create(`{}`)
	if resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{"timeout": "never"}`)); resp.status != http.StatusBadRequest {
		t.Errorf("an invalid request over the limit: %d, want 400: it starts nothing", resp.status)
	}
}

func TestThePostLimitIsEachUsersOwn(t *testing.T) {
	k := kube.Start(t)
	e := newEnv(t, withAuth(t, map[string]*rest.Config{"": k.Admin}), func(_ *env, d *Deps) { d.PostRate, d.PostBurst = 1, 1 })
	other := serviceAccountBoundTo(t, k, "cluster-admin")
	post := func(token string) int {
		t.Helper()
		return e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{}`), bearer(token)...).status
	}
	if s := post(k.Admin.BearerToken); s != http.StatusCreated {
		t.Fatalf("the admin's first POST: %d", s)
	}
	if s := post(k.Admin.BearerToken); s != http.StatusTooManyRequests {
		t.Errorf("the admin's second POST: %d, want 429", s)
	}
	if s := post(other); s != http.StatusCreated {
		t.Errorf("another cluster-admin's first POST: %d, want 201: the limit is per user", s)
	}
	if s := post(k.NoRights.BearerToken); s != http.StatusForbidden {
		t.Errorf("a user without rights: %d, want 403, not a count against anyone's limit", s)
	}
	if s := post(""); s != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", s)
	}
}

func TestImagesOutsideTheAllowListAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *env, d *Deps) {
		d.Policy.AllowedImages = []string{"quay.io/kubev2v/*"}
		d.Policy.DefaultImage = "quay.io/kubev2v/forklift-must-gather:latest"
	})
	e.create(`{"image": "quay.io/kubev2v/forklift-must-gather:2.9"}`)
	e.create(`{}`)
	resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{"image": "quay.io/kubev2v/a,quay.io/evil/b:1"}`))
	if resp.status != http.StatusBadRequest {
		t.Fatalf("an image outside the list: %d %s, want 400", resp.status, resp.body)
	}
	want := errorBody{Field: "image", Error: `"quay.io/evil/b:1" is not an allowed image; allowed: quay.io/kubev2v/*`}
	if diff := cmp.Diff(want, errorOf(t, resp)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestWithAuthOnAProcessWithoutTheAPIGuardsMetricsToo(t *testing.T) {
	k := kube.Start(t)
	reviewer := withAuth(t, map[string]*rest.Config{"": k.Admin})
	var d Deps
	reviewer(nil, &d)
	d.Registry = prometheus.NewRegistry()
	srv := httptest.NewServer(NewOpsHandler(d))
	t.Cleanup(srv.Close)
	get := func(path, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name, path, token string
		want              int
	}{
		{"no token is refused /metrics", "/metrics", "", http.StatusUnauthorized},
		{"a garbage token is refused /metrics", "/metrics", "garbage-token", http.StatusUnauthorized},
		{"a user without rights is forbidden /metrics", "/metrics", k.NoRights.BearerToken, http.StatusForbidden},
		{"a metrics reader gets /metrics", "/metrics", metricsReader(t, k), http.StatusOK},
		{"the cluster-admin gets /metrics", "/metrics", k.Admin.BearerToken, http.StatusOK},
		{"health needs no token", "/healthz", "", http.StatusOK},
		{"readiness needs no token", "/readyz", "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := get(tt.path, tt.token); got != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}
