package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/functions/web"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

func withWeb(t *testing.T) func(*env, *Deps) {
	return func(_ *env, d *Deps) {
		h, err := web.New(web.Config{})
		if err != nil {
			t.Fatal(err)
		}
		d.Web = h
	}
}

func TestWithAuthOnThePageNeedsNoTokenWhileTheAPIDoes(t *testing.T) {
	k := kube.Start(t)
	e := newEnv(t, withAuth(t, map[string]*rest.Config{"": k.Admin}), withWeb(t))
	for _, tt := range []struct {
		name, method, path, token string
		want                      int
		json                      bool // the answer is the API's JSON
	}{
		{"the page needs no token", http.MethodGet, "/", "", http.StatusOK, false},
		{"nor does HEAD of the page", http.MethodHead, "/", "", http.StatusOK, false},
		{"nor its script", http.MethodGet, "/static/app.js", "", http.StatusOK, false},
		{"the list needs one", http.MethodGet, "/must-gather", "", http.StatusUnauthorized, true},
		{"the list with the cluster-admin's token", http.MethodGet, "/must-gather", k.Admin.BearerToken, http.StatusOK, true},
		{"a file the page does not have is the API's 404", http.MethodGet, "/static/nope.js", "", http.StatusNotFound, true},
		{"an unknown path is still the API's 404", http.MethodGet, "/nope", "", http.StatusNotFound, true},
		{"an unknown path under static is the API's 404", http.MethodGet, "/static/a/b.js", "", http.StatusNotFound, true},
		{"a POST to the page is the API's 405", http.MethodPost, "/", "", http.StatusMethodNotAllowed, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(tt.method, tt.path, "", nil, bearer(tt.token)...)
			if resp.status != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.status, resp.body, tt.want)
			}
			if tt.json {
				var body struct {
					Error string `json:"error"`
				}
				if resp.status >= 400 && (json.Unmarshal(resp.body, &body) != nil || body.Error == "") {
					t.Errorf("body %s, want a JSON error", resp.body)
				}
				return
			}
			if resp.header.Get("Content-Security-Policy") == "" {
				t.Error("no Content-Security-Policy")
			}
		})
	}
}

func TestWithoutAPageTheRootIsTheAPIs404(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if resp := e.do(http.MethodGet, "/", "", nil); resp.status != http.StatusNotFound {
		t.Errorf("GET /: %d %s, want 404", resp.status, resp.body)
	}
}
