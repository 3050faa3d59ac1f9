// Package web is the page that shows a person the whole flow: the list of
// gatherings with live status, a form to start one, its output while it
// runs, and its archive. The page is static files embedded in the binary,
// with no build step and nothing fetched at run time; its scripts call the
// API from the browser, with the user's token when one is needed.
//
// The files hold no data and need no token: the page asks for one when
// the API answers 401. They are served with a strict Content-Security-Policy
// (no inline script or style, nothing from another origin), so that pod
// output the page shows can never run as script.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html static
var files embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string // strong, from the content's SHA-256
	version     string // the query (?v=) that pins this content in the page
}

// Handler serves the page at / and its files under /static/. It answers
// GET and HEAD; the caller routes only those to it.
type Handler struct {
	csp    string
	page   file
	static map[string]file // by name under static/
}

// contentTypes are the media types of the page's files, by extension. A
// file of any other extension is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Config is what the page shows of the server's settings.
type Config struct {
	// Redact is the server's default for redaction (REDACT_DEFAULT): the
	// form's "Redact secrets" box starts checked when it is set. The page
	// always sends the box's state, so unchecked asks for no redaction.
	Redact bool
}

// redactBox is the form's redaction checkbox as index.html holds it.
const redactBox = `<input type="checkbox" id="f-redact" name="redact"`

// New returns the page's handler.
func New(cfg Config) (*Handler, error) {
	h := &Handler{csp: contentSecurityPolicy, static: map[string]file{}}
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		body, err := files.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, err
		}
		f, ok := newFile(e.Name(), body)
		if !ok {
			return nil, fmt.Errorf("web: static/%s has no known content type", e.Name())
		}
		h.static[e.Name()] = f
	}
	page, err := files.ReadFile("index.html")
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(page, []byte(redactBox)) {
		return nil, fmt.Errorf("web: index.html has no redaction checkbox")
	}
	if cfg.Redact {
		page = bytes.Replace(page, []byte(redactBox), []byte(redactBox+" checked"), 1)
	}
	// The page names each file with its version, so that a browser may
	// keep the file for good and still never mixes an old script with a
	// new page.
	for name, f := range h.static {
		page = []byte(strings.ReplaceAll(string(page), `"static/`+name+`"`, `"static/`+name+`?v=`+f.version+`"`))
	}
	h.page, _ = newFile("index.html", page)
	return h, nil
}

func newFile(name string, body []byte) (file, bool) {
	ct, ok := contentTypes[path.Ext(name)]
	sum := sha256.Sum256(body)
	v := hex.EncodeToString(sum[:8])
	return file{body: body, contentType: ct, etag: `"` + v + `"`, version: v}, ok
}

// contentSecurityPolicy allows the page's own scripts, styles, images and
// fetches, and data: images; nothing inline, no frames around it, no base
// URL but its own. A presigned download link, which may point at S3, is
// followed as a navigation that saves a file, which connect-src does not
// govern, so the page needs no other origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// immutable is how long a browser may keep a file whose URL names its
// version.
const immutable = "public, max-age=31536000, immutable"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	name, isStatic := strings.CutPrefix(r.URL.Path, "/static/")
	f, ok := h.static[name]
	if !isStatic {
		f, ok = h.page, r.URL.Path == "/"
	}
	if !ok {
		// As the API answers a path it does not know.
		hd.Set("Content-Type", "application/json")
		hd.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "no such resource: " + r.URL.Path})
		return
	}
	// The page and a file asked for without its version are checked again
	// each time (304 while unchanged); a file asked for by its version
	// never changes.
	hd.Set("Cache-Control", "no-cache")
	if isStatic && r.URL.Query().Get("v") == f.version {
		hd.Set("Cache-Control", immutable)
	}
	hd.Set("Content-Type", f.contentType)
	hd.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
