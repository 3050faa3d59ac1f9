package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func newHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(h http.Handler, method, target string, header ...string) answer {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return answer{w.Code, w.Result().Header, string(b)}
}

// pageAssets returns the local URLs the page loads: scripts, styles, icons.
func pageAssets(t *testing.T, page string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		for _, a := range n.Attr {
			if (n.Data == "script" && a.Key == "src") || (n.Data == "link" && a.Key == "href") {
				urls = append(urls, a.Val)
			}
		}
	}
	return urls
}

func TestThePageIsServedWithAStrictPolicyAndNoInlineCode(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	a := get(h, http.MethodGet, "/")
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %s", a.status, a.header.Get("Content-Type"))
	}
	wantCSP := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	if got := a.header.Get("Content-Security-Policy"); got != wantCSP {
		t.Errorf("Content-Security-Policy:\n got %s\nwant %s", got, wantCSP)
	}
	if got := a.header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}

	doc, err := html.Parse(strings.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	scripts := 0
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		attrs := map[string]string{}
		for _, at := range n.Attr {
			attrs[at.Key] = at.Val
			if strings.HasPrefix(at.Key, "on") {
				t.Errorf("<%s> has an inline handler %s", n.Data, at.Key)
			}
			if at.Key == "style" {
				t.Errorf("<%s> has an inline style", n.Data)
			}
			if (at.Key == "href" || at.Key == "src" || at.Key == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(at.Val)), "javascript:") {
				t.Errorf("<%s %s=%q> is a javascript: URL", n.Data, at.Key, at.Val)
			}
		}
		switch n.Data {
		case "script":
			scripts++
			if attrs["src"] == "" || n.FirstChild != nil {
				t.Errorf("a <script> without src, or with content: %v", attrs)
			}
		case "style":
			t.Error("an inline <style> element")
		}
	}
	if scripts == 0 {
		t.Error("the page loads no script")
	}
	// Every input has a label, by for= or by being inside one.
	labelled := map[string]bool{}
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "label" {
			for _, at := range n.Attr {
				if at.Key == "for" {
					labelled[at.Val] = true
				}
			}
		}
	}
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.Data != "input" {
			continue
		}
		id := ""
		for _, at := range n.Attr {
			if at.Key == "id" {
				id = at.Val
			}
		}
		inLabel := false
		for p := n.Parent; p != nil; p = p.Parent {
			inLabel = inLabel || (p.Type == html.ElementNode && p.Data == "label")
		}
		if !labelled[id] && !inLabel {
			t.Errorf("input %q has no label", id)
		}
	}
}

func TestStaticFilesAreServedWithTheirTypesAndCached(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	page := get(h, http.MethodGet, "/").body
	assets := pageAssets(t, page)
	if len(assets) < 3 {
		t.Fatalf("the page loads %v, want its icon, style and script", assets)
	}
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	versioned := regexp.MustCompile(`^static/[a-z]+\.(js|css|svg)\?v=[0-9a-f]{16}$`)
	for _, u := range assets {
		if !versioned.MatchString(u) {
			t.Errorf("the page loads %q, want a relative static/ URL with its version", u)
			continue
		}
		a := get(h, http.MethodGet, "/"+u)
		ext := u[strings.LastIndex(u, "."):strings.Index(u, "?")]
		if a.status != http.StatusOK || a.header.Get("Content-Type") != wantType[ext] {
			t.Errorf("GET /%s: %d %q, want 200 %q", u, a.status, a.header.Get("Content-Type"), wantType[ext])
		}
		if a.header.Get("Cache-Control") != immutable || a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /%s: Cache-Control %q, nosniff %q", u, a.header.Get("Cache-Control"), a.header.Get("X-Content-Type-Options"))
		}
		// Asked for without its version (a module import), or with an old
		// one, it is checked again, and unchanged is a 304.
		plain := get(h, http.MethodGet, "/"+u[:strings.Index(u, "?")]+"?v=0000000000000000")
		if plain.header.Get("Cache-Control") != "no-cache" || plain.body != a.body {
			t.Errorf("GET %s with another version: Cache-Control %q", u, plain.header.Get("Cache-Control"))
		}
		again := get(h, http.MethodGet, "/"+u, "If-None-Match", a.header.Get("ETag"))
		if a.header.Get("ETag") == "" || again.status != http.StatusNotModified {
			t.Errorf("GET /%s with If-None-Match %q: %d, want 304", u, a.header.Get("ETag"), again.status)
		}
	}
	if a := get(h, http.MethodGet, "/"); a.header.Get("Cache-Control") != "no-cache" || a.header.Get("ETag") == "" {
		t.Errorf("GET /: Cache-Control %q, ETag %q; want a page checked again each time", a.header.Get("Cache-Control"), a.header.Get("ETag"))
	}

	// Every module the page's script imports is served as JavaScript too.
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	err := fs.WalkDir(files, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := files.ReadFile(path)
		for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
			if a := get(h, http.MethodGet, "/static/"+m[1]); a.status != http.StatusOK || a.header.Get("Content-Type") != wantType[".js"] {
				t.Errorf("%s imports %s: %d %q", path, m[1], a.status, a.header.Get("Content-Type"))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/static/nope.js", "/static/", "/index.html", "/static/../index.html"} {
		a := get(h, http.MethodGet, path)
		if a.status != http.StatusNotFound || a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.body, `"error"`) {
			t.Errorf("GET %s: %d %q %s, want a JSON 404", path, a.status, a.header.Get("Content-Type"), a.body)
		}
	}
}

func TestTheRedactBoxStartsAsTheServersDefault(t *testing.T) {
	for _, tc := range []struct {
		name    string
		redact  bool
		checked bool
	}{
		{"a server that redacts by default checks the box", true, true},
		{"a server that does not leaves it unchecked", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(Config{Redact: tc.redact})
			if err != nil {
				t.Fatal(err)
			}
			doc, err := html.Parse(strings.NewReader(get(h, http.MethodGet, "/").body))
			if err != nil {
				t.Fatal(err)
			}
			found, checked := false, false
			for n := range doc.Descendants() {
				if n.Type != html.ElementNode || n.Data != "input" || attr(n, "id") != "f-redact" {
					continue
				}
				found = true
				for _, a := range n.Attr {
					checked = checked || a.Key == "checked"
				}
			}
			if !found || checked != tc.checked {
				t.Errorf("redact box found %v, checked %v; want checked %v", found, checked, tc.checked)
			}
		})
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
