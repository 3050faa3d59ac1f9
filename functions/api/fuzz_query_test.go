package api

import (
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// FuzzQueryParameters checks the list filters (GET /must-gather) and
// ?partial= of a download against any query string: each is either read
// into a filter the store can use, or answered 400 naming the parameter,
// in a message of bounded length; never a panic.
func FuzzQueryParameters(f *testing.F) {
	for _, q := range []string{
		"status=completed&limit=10", "custom-name=plan%3Ax", "status=done", "limit=-1", "limit=99999999999999999999",
		"limit=1&limit=2", "after=5&limit=2", "after=0", "after=-1", "after=00", "unknown=1", "%zz", "custom-name=", "partial=true", "partial=maybe", "partial=1&partial=0", ";",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/must-gather", nil)
		r.URL.RawQuery = raw
		checkAnswer := func(what string, err error) {
			status, answer := httpError(err)
			if status != http.StatusBadRequest || answer.Field == "" || answer.Error == "" {
				t.Fatalf("%s of %q: %v answers %d %+v, want 400 naming a field", what, raw, err, status, answer)
			}
			if len(answer.Field) > 80 {
				t.Fatalf("%s of %q names a field of %d bytes", what, raw, len(answer.Field))
			}
		}
		filter, err := listFilter(r)
		switch {
		case err != nil:
			checkAnswer("list filter", err)
		case filter.Status != "" && !filter.Status.Valid():
			t.Fatalf("query %q gave status %q", raw, filter.Status)
		case filter.Limit < 0:
			t.Fatalf("query %q gave limit %d", raw, filter.Limit)
		}
		if _, err := partialParam(r); err != nil {
			checkAnswer("partial", err)
		}
	})
}

// FuzzContentDisposition checks that the download of any gathering, named
// by any custom-name, is saved under its archive name: the header parses
// back to an attachment of exactly that file name.
func FuzzContentDisposition(f *testing.F) {
	for _, s := range []string{"plan:mig-plan-cold", `quote"d`, "ünïcödé", "a;b=c", "\r\nSet-Cookie: x=y", ""} {
		f.Add(uint64(7), s)
	}
	f.Fuzz(func(t *testing.T, id uint64, customName string) {
		if id == 0 {
			id = 1
		}
		name := mustgather.ArchiveName(mustgather.ID(id), customName)
		h := attachment(name)
		if strings.ContainsAny(h, "\r\n") {
			t.Fatalf("header %q holds a line break", h)
		}
		disposition, params, err := mime.ParseMediaType(h)
		if err != nil || disposition != "attachment" || params["filename"] != name {
			t.Fatalf("header %q for %q reads back as %q %v, %v", h, name, disposition, params, err)
		}
	})
}

// FuzzLookupReference checks what a path's {id} may name: a reference is
// an id, a custom-name, or nothing any gathering is called, and the answer
// to the last quotes it clipped, as valid UTF-8.
func FuzzLookupReference(f *testing.F) {
	for _, s := range []string{"1", "007", "plan:x", "../x", "%2F", "a\u202eb", strings.Repeat("x", 400), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if _, isID := mustgather.ParseID(ref); isID {
			return
		}
		if mustgather.IsCustomName(ref) {
			if !utf8.ValidString(ref) || len(ref) > mustgather.MaxCustomNameLen {
				t.Fatalf("%q taken for a custom-name", ref)
			}
			return
		}
		msg := clip(ref)
		if len(msg) > 2*len(ref)+80 || (utf8.ValidString(ref) && !utf8.ValidString(msg)) {
			t.Fatalf("clip(%q) = %q", ref, msg)
		}
		if u, err := url.Parse("/must-gather/" + url.PathEscape(ref)); err != nil || u.Path != "/must-gather/"+ref {
			t.Fatalf("reference %q does not travel in a path: %v %v", ref, u, err)
		}
	})
}

// FuzzIsClean checks the fast test of a request's path against path.Clean:
// a path it vouches for is one the mux matches as it is.
func FuzzIsClean(f *testing.F) {
	for _, p := range []string{"/", "/must-gather", "/must-gather/", "/must-gather/1", "//must-gather", "/must-gather/./1",
		"/must-gather/x/../1", "/a/..", "/a/.", "must-gather", "", "/a//b", "/.hidden", "/..a", "/a.", "/%2e%2e/x"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if isClean(p) && path.Clean(p) != p {
			t.Errorf("isClean(%q), but path.Clean gives %q", p, path.Clean(p))
		}
		if !isClean(p) && strings.HasPrefix(p, "/") && !strings.HasSuffix(p, "/") && path.Clean(p) == p {
			t.Errorf("isClean(%q) is false for a clean path", p)
		}
	})
}
