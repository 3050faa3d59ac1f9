package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/presign"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// withLocalLinks makes local download links that work for a minute,
// telling time by clk (nil: the real time), starting with publicURL or, if
// that is empty, with the request's base.
func withLocalLinks(t testing.TB, clk *clock, publicURL string) func(*env, *Deps) {
	return func(_ *env, d *Deps) {
		var now func() time.Time
		if clk != nil {
			now = clk.now
		}
		l, err := presign.NewLocal(presign.Config{TTL: time.Minute, PublicURL: publicURL}, now)
		if err != nil {
			t.Fatal(err)
		}
		d.Links = l
	}
}

// link is an answer of GET /must-gather/{id}/url.
type link struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expires-at"`
}

// link asks for the download link of the gathering ref with header.
func (e *env) link(ref string, header ...string) link {
	e.t.Helper()
	resp := e.do(http.MethodGet, "/must-gather/"+ref+"/url", "", nil, header...)
	if resp.status != http.StatusOK {
		e.t.Fatalf("GET /must-gather/%s/url: %d %s", ref, resp.status, resp.body)
	}
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		e.t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var l link
	if err := json.Unmarshal(resp.body, &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// plainGet fetches u as a browser would follow a link: no credentials.
func plainGet(t testing.TB, u string) response {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// tamper returns link u with its query parameter name set to value.
func tamper(t testing.TB, u, name, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(name, value)
	p.RawQuery = q.Encode()
	return p.String()
}

func TestURLAnswersOnlyForACompletedGatheringWithAnArchive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLocalLinks(t, nil, ""))
	fresh := e.create(`{"custom-name": "fresh"}`)
	running := e.create(`{}`)
	e.claim(running.ID)
	failed := e.create(`{}`)
	e.finish(failed.ID, mustgather.StatusError, map[string]string{"partial": "x"})
	empty := e.create(`{}`)
	e.finish(empty.ID, mustgather.StatusCompleted, nil)
	gone := e.create(`{}`)
	e.finish(gone.ID, mustgather.StatusCompleted, map[string]string{"a": "b"})
	goneG, err := e.store.Get(context.Background(), gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.archives.Delete(context.Background(), mustgather.ArchiveKey(gone.ID, goneG.ArchiveName)); err != nil {
		t.Fatal(err)
	}
	done := e.create(`{"custom-name": "done"}`)
	e.finish(done.ID, mustgather.StatusCompleted, map[string]string{"a": "b"})

	for _, tt := range []struct {
		name   string
		ref    string
		status int
		want   string // in the body
	}{
		{"a new gathering conflicts", fresh.ID.String(), http.StatusConflict, `"status":"new"`},
		{"one in progress conflicts", running.ID.String(), http.StatusConflict, `"status":"inprogress"`},
		{"one that failed conflicts, partial archive or not", failed.ID.String(), http.StatusConflict, `only a completed gathering's archive has a download link","status":"error"`},
		{"one completed without an archive is not found", empty.ID.String(), http.StatusNotFound, "without an archive"},
		{"one whose archive is gone is not found", gone.ID.String(), http.StatusNotFound, "no longer stored"},
		{"an unknown one is not found", "999", http.StatusNotFound, "no gathering"},
		{"a query parameter is refused", done.ID.String() + "/url?partial=true", http.StatusBadRequest, `"field":"partial"`},
		{"a completed one by id has a link", done.ID.String(), http.StatusOK, `"url":"http://127.0.0.1:`},
		{"and by custom-name", "done", http.StatusOK, `"expires-at":"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := "/must-gather/" + tt.ref
			if !strings.Contains(tt.ref, "/url") {
				path += "/url"
			}
			resp := e.do(http.MethodGet, path, "", nil)
			var compact bytes.Buffer
			if err := json.Compact(&compact, resp.body); err != nil {
				t.Fatalf("%s: %v", resp.body, err)
			}
			if resp.status != tt.status || !strings.Contains(compact.String(), tt.want) {
				t.Errorf("status %d %s, want %d with %s", resp.status, resp.body, tt.status, tt.want)
			}
			if tt.status >= 400 {
				errorOf(t, resp)
			}
		})
	}
}

func TestASignedLinkDownloadsWithoutATokenWhileAuthIsOn(t *testing.T) {
	k := kube.Start(t)
	clk := &clock{t: time.Now()}
	e := newEnv(t, withAuth(t, map[string]*rest.Config{"": k.Admin, "prod": k.Admin}), withLocalLinks(t, clk, ""))
	admin := bearer(k.Admin.BearerToken)
	g := e.create(`{"custom-name": "plan1", "server": "prod"}`, admin...)
	archive := e.finish(g.ID, mustgather.StatusCompleted, map[string]string{"namespaces/openshift-mtv/plan.yaml": "kind: Plan\n"})
	other := e.create(`{}`, admin...)
	e.finish(other.ID, mustgather.StatusCompleted, map[string]string{"other": "x"})

	l := e.link("plan1", admin...)
	wantPrefix := fmt.Sprintf("%s/must-gather/%d/data?expires=", e.srv.URL, g.ID)
	if !strings.HasPrefix(l.URL, wantPrefix) {
		t.Fatalf("url %s, want %s…", l.URL, wantPrefix)
	}
	expiresAt, err := time.Parse(time.RFC3339, l.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.now().Add(time.Minute).Truncate(time.Second); !expiresAt.Equal(want) {
		t.Errorf("expires-at %s, want %s", l.ExpiresAt, want.UTC().Format(time.RFC3339))
	}
	withToken := e.do(http.MethodGet, fmt.Sprintf("/must-gather/%d/data", g.ID), "", nil, admin...)

	t.Run("the link downloads the same bytes as the token, under the archive's name", func(t *testing.T) {
		resp := plainGet(t, l.URL)
		if resp.status != http.StatusOK || string(resp.body) != string(archive) || string(withToken.body) != string(archive) {
			t.Fatalf("status %d, %d bytes (with a token %d bytes); want 200 and the archive's %d", resp.status, len(resp.body), len(withToken.body), len(archive))
		}
		want := fmt.Sprintf(`attachment; filename="must-gather-%d-plan1.tar.gz"`, g.ID)
		if cd := resp.header.Get("Content-Disposition"); cd != want {
			t.Errorf("Content-Disposition %q, want %q", cd, want)
		}
		if !strings.Contains(e.log.String(), fmt.Sprintf(`msg=audit action=download user="" gathering=%d server=prod via=signed-url`, g.ID)) {
			t.Errorf("no audit line for the signed download")
		}
	})

	t.Run("a range of it too", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, l.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Range", "bytes=0-9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || string(body) != string(archive[:10]) {
			t.Errorf("status %d, %q; want 206 and the first 10 bytes", resp.StatusCode, body)
		}
	})

	t.Run("the token path is unchanged: no token, no download", func(t *testing.T) {
		resp := e.do(http.MethodGet, fmt.Sprintf("/must-gather/%d/data", g.ID), "", nil)
		if resp.status != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.status)
		}
	})

	sig := func(u string) string { p, _ := url.Parse(u); return p.Query().Get("signature") }
	exp := func(u string) string { p, _ := url.Parse(u); return p.Query().Get("expires") }
	flipped := []byte(sig(l.URL))
	flipped[len(flipped)-1] = map[bool]byte{true: '1', false: '0'}[flipped[len(flipped)-1] == '0']
	for _, tt := range []struct {
		name, url string
		status    int
		want      string
	}{
		{"another gathering's id is refused", strings.Replace(l.URL, fmt.Sprintf("/must-gather/%d/", g.ID), fmt.Sprintf("/must-gather/%d/", other.ID), 1),
			http.StatusForbidden, "signature is not valid"},
		{"the custom-name for the id is the same gathering, and works", strings.Replace(l.URL, fmt.Sprintf("/must-gather/%d/", g.ID), "/must-gather/plan1/", 1),
			http.StatusOK, ""},
		{"an unknown id is refused the same way, telling nothing", strings.Replace(l.URL, fmt.Sprintf("/must-gather/%d/", g.ID), "/must-gather/999/", 1),
			http.StatusForbidden, "signature is not valid"},
		{"a later expiry is refused", tamper(t, l.URL, "expires", fmt.Sprint(expiresAt.Unix()+3600)), http.StatusForbidden, "signature is not valid"},
		{"a changed signature is refused", tamper(t, l.URL, "signature", string(flipped)), http.StatusForbidden, "signature is not valid"},
		{"an empty signature is refused", tamper(t, l.URL, "signature", ""), http.StatusForbidden, "signature is not valid"},
		{"expires without a signature is refused", fmt.Sprintf("%s/must-gather/%d/data?expires=%s", e.srv.URL, g.ID, exp(l.URL)), http.StatusForbidden, "signature is not valid"},
		{"another parameter is refused", l.URL + "&partial=true", http.StatusBadRequest, `"field":"partial"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := plainGet(t, tt.url)
			if resp.status != tt.status || !strings.Contains(strings.ReplaceAll(string(resp.body), `": "`, `":"`), tt.want) {
				t.Errorf("status %d %.200s, want %d with %q", resp.status, resp.body, tt.status, tt.want)
			}
			if tt.status >= 400 {
				errorOf(t, resp)
				if cd := resp.header.Get("Content-Disposition"); cd != "" {
					t.Errorf("an error with Content-Disposition %q", cd)
				}
			}
		})
	}

	t.Run("an expired link is refused, saying that it expired", func(t *testing.T) {
		clk.add(time.Minute)
		defer clk.add(-time.Minute)
		resp := plainGet(t, l.URL)
		want := "the download URL expired at " + l.ExpiresAt
		if resp.status != http.StatusForbidden || !strings.Contains(errorOf(t, resp).Error, want) {
			t.Errorf("status %d %s, want 403 saying %q", resp.status, resp.body, want)
		}
	})

	t.Run("a link stops working once the archive is gone", func(t *testing.T) {
		name := mustgather.ArchiveName(g.ID, "plan1")
		if err := e.archives.Delete(context.Background(), mustgather.ArchiveKey(g.ID, name)); err != nil {
			t.Fatal(err)
		}
		resp := plainGet(t, l.URL)
		if resp.status != http.StatusNotFound || !strings.Contains(errorOf(t, resp).Error, "no longer stored") {
			t.Errorf("status %d %s, want 404", resp.status, resp.body)
		}
	})

	t.Run("each link handed out is in the audit log, and no link's signature is", func(t *testing.T) {
		log := e.log.String()
		want := fmt.Sprintf("msg=audit action=presign user=%s gathering=%d server=prod expires-at=%s", kube.AdminUser, g.ID, l.ExpiresAt)
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
		if strings.Contains(log, sig(l.URL)) {
			t.Errorf("the log holds a link's signature")
		}
	})
}

func TestURLAndSignedDownloadsMatchTheOpenAPIDocument(t *testing.T) {
	t.Parallel()
	_, router := loadOpenAPI(t)
	e := newEnv(t, withLocalLinks(t, nil, ""))
	fresh := e.create(`{}`)
	done := e.create(`{}`)
	e.finish(done.ID, mustgather.StatusCompleted, map[string]string{"f": "x"})
	l := e.link(done.ID.String())
	signed := strings.TrimPrefix(l.URL, e.srv.URL)
	for _, tt := range []struct {
		name, path string
		status     int
	}{
		{"a link", "/must-gather/" + done.ID.String() + "/url", http.StatusOK},
		{"no link yet", "/must-gather/" + fresh.ID.String() + "/url", http.StatusConflict},
		{"no such gathering", "/must-gather/999/url", http.StatusNotFound},
		{"a signed download", signed, http.StatusOK},
		{"a signed download that does not verify", tamper(t, signed, "expires", "1"), http.StatusForbidden},
	} {
		t.Run(fmt.Sprintf("%s answers %d as documented", tt.name, tt.status), func(t *testing.T) {
			req := e.request(http.MethodGet, tt.path, "", nil)
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("no route in the document: %v", err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: authOff}
			if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
				t.Errorf("the document rejects the request: %v", err)
			}
			resp := e.do(http.MethodGet, tt.path, "", nil)
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			if err := validateResponse(in, resp); err != nil {
				t.Errorf("response does not match the document: %v\nbody: %.500s", err, resp.body)
			}
		})
	}
}
