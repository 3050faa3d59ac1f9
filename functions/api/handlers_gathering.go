package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// writeTimeout bounds storing and announcing a new gathering. That work
// runs to the end even when the client hangs up, so that a stored gathering
// is announced whenever possible.
const writeTimeout = 15 * time.Second

// handleCreate starts a gathering: decode, validate, authorize against
// the cluster it runs on, count against the user's limit, store, announce.
func handleCreate(d Deps, posts *limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r, MaxBodyBytes, d.BodyTimeout)
		if err != nil {
			respondUnlessDenied(w, r, d, err)
			return
		}
		req, err := decodeRequest(r.Header.Get("Content-Type"), body)
		if err != nil {
			respondUnlessDenied(w, r, d, err)
			return
		}
		req, err = req.Validate(d.Policy)
		if err != nil {
			respondUnlessDenied(w, r, d, err)
			return
		}
		who, err := authorize(d, r, req.Server, mustgather.AccessAdmin)
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		if err := posts.allow(limitKey(r, who)); err != nil {
			d.Logger.InfoContext(r.Context(), "gathering refused: over the limit", "user", who.Username, "remote", r.RemoteAddr)
			respondErr(w, r, d.Logger, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), writeTimeout)
		defer cancel()
		g := mustgather.NewGathering(req, d.Now())
		g.RequestedBy = who.Username
		g, err = mustgather.Start(ctx, d.Store, d.Events, g)
		if err != nil && !errors.Is(err, mustgather.ErrNotAnnounced) {
			respondErr(w, r, d.Logger, err)
			return
		}
		d.Logger.InfoContext(ctx, "gathering requested", "gathering", g.ID, "request", req.String())
		audit(ctx, d, "create", who, g)
		if err != nil {
			d.Logger.WarnContext(ctx, "gathering stored but not announced; the reaper will announce it", "gathering", g.ID, "err", err)
		}
		w.Header().Set("Location", "/must-gather/"+g.ID.String())
		writeJSON(w, http.StatusCreated, g)
	})
}

// limitKey is whose limit a request counts against: its user's, or, with
// authorization off, its remote address's.
func limitKey(r *http.Request, who mustgather.Principal) string {
	if who.Username != "" {
		return "user:" + who.Username
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// audit logs that who did action to g: who asked for what, never how they
// proved it.
func audit(ctx context.Context, d Deps, action string, who mustgather.Principal, g mustgather.Gathering, attrs ...any) {
	d.Logger.InfoContext(ctx, "audit", append([]any{"action", action, "user", who.Username, "gathering", g.ID, "server", g.Server}, attrs...)...)
}

// handleList lists gatherings by id, optionally filtered: from the view,
// as a stream, when it has caught up, else from the store.
func handleList(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := listFilter(r)
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		if synced(r.Context(), d) {
			streamList(w, r, d, f)
			return
		}
		list, err := d.Store.List(r.Context(), f)
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		if list == nil {
			list = []mustgather.Gathering{}
		}
		writeJSON(w, http.StatusOK, list)
	})
}

func listFilter(r *http.Request) (mustgather.Filter, error) {
	q, err := query(r, "custom-name", "status", "limit", "after")
	if err != nil {
		return mustgather.Filter{}, err
	}
	f := mustgather.Filter{CustomName: q["custom-name"]}
	if s, ok := q["status"]; ok {
		f.Status = mustgather.Status(s)
		if !f.Status.Valid() {
			return f, &mustgather.FieldError{Field: "status", Message: fmt.Sprintf("must be one of new, inprogress, completed, error; got %q", clip(s))}
		}
	}
	if s, ok := q["limit"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return f, &mustgather.FieldError{Field: "limit", Message: fmt.Sprintf("must be a positive integer; got %q", clip(s))}
		}
		f.Limit = n
	}
	if s, ok := q["after"]; ok {
		// 0 is no id, but a cursor before the first.
		id, ok := mustgather.ParseID(s)
		if !ok && s != "0" {
			return f, &mustgather.FieldError{Field: "after", Message: fmt.Sprintf("must be the id of a gathering (a positive integer) or 0; got %q", clip(s))}
		}
		f.After, f.Paged = id, true
	}
	return f, nil
}

// handleGet shows one gathering, named by id or custom-name.
func handleGet(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := query(r)
		if err == nil && synced(r.Context(), d) {
			getFromView(w, r, d)
			return
		}
		g, _, ok := authorizedGathering(w, r, d, err)
		if !ok {
			return
		}
		// The revision, for a DELETE with If-Match that deletes only
		// what the caller saw.
		w.Header().Set("ETag", etag(g))
		writeJSON(w, http.StatusOK, g)
	})
}

// authorizedGathering returns the gathering r's path names and who sent
// r, if they are a cluster-admin of its cluster. queryErr is what was
// wrong with r's query, if anything. When it reports false it has answered
// r: an error found before the caller was authorized only to a
// cluster-admin of the default cluster.
func authorizedGathering(w http.ResponseWriter, r *http.Request, d Deps, queryErr error) (mustgather.Gathering, mustgather.Principal, bool) {
	if queryErr != nil {
		respondUnlessDenied(w, r, d, queryErr)
		return mustgather.Gathering{}, mustgather.Principal{}, false
	}
	g, err := lookup(r.Context(), d.Store, r.PathValue("id"))
	if err != nil {
		respondUnlessDenied(w, r, d, err)
		return g, mustgather.Principal{}, false
	}
	who, err := authorize(d, r, g.Server, mustgather.AccessAdmin)
	if err != nil {
		respondErr(w, r, d.Logger, err)
		return g, who, false
	}
	return g, who, true
}

// handleData streams a completed gathering's archive, or with
// ?partial=true the partial archive of one that ended in error. Range
// requests, conditional requests and HEAD work through http.ServeContent.
func handleData(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		partial, err := partialParam(r)
		g, who, ok := authorizedGathering(w, r, d, err)
		if !ok {
			return
		}
		if err := downloadable(g, partial); err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		serveArchive(w, r, d, g, func() { audit(r.Context(), d, "download", who, g) })
	})
}

// openArchive opens g's archive, or says that it is gone.
func openArchive(ctx context.Context, d Deps, g mustgather.Gathering) (mustgather.Archive, error) {
	a, err := d.Archives.Open(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName))
	if errors.Is(err, mustgather.ErrNotFound) {
		err = fmt.Errorf("%w: the archive of gathering %d is no longer stored", mustgather.ErrNotFound, g.ID)
	}
	return a, err
}

// serveArchive streams g's archive, which the caller may have, calling
// opened once it is open.
func serveArchive(w http.ResponseWriter, r *http.Request, d Deps, g mustgather.Gathering, opened func()) {
	a, err := openArchive(r.Context(), d, g)
	if err != nil {
		respondErr(w, r, d.Logger, err)
		return
	}
	defer a.Close()
	opened()
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", attachment(g.ArchiveName))
	h.Set("X-Content-Type-Options", "nosniff")
	cw := &contentErrors{ResponseWriter: w}
	http.ServeContent(cw, r, g.ArchiveName, a.ModTime(), a)
	if cw.status != 0 {
		// An error is no attachment: curl -OJ would save it as the
		// archive. Content-Range (bytes */size on a 416) stays.
		h.Del("Content-Disposition")
		respondErr(w, r, d.Logger, &contentError{
			status: cw.status, id: g.ID, rng: r.Header.Get("Range"), size: a.Size(), text: strings.TrimSpace(cw.text.String()),
		})
	}
}

// contentErrors is the ResponseWriter http.ServeContent writes to. It
// passes the archive and the other answers through, but holds back an error
// answer (416 for a range outside the archive, 412 for a failed
// precondition), which ServeContent writes as text/plain, so that the
// handler answers it as JSON like every other error.
type contentErrors struct {
	http.ResponseWriter
	status int             // the error status held back, 0 while none
	text   strings.Builder // its text/plain message, at most textMax bytes
}

const textMax = 256

func (c *contentErrors) WriteHeader(code int) {
	if code >= 400 {
		if c.status == 0 {
			c.status = code
		}
		return
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *contentErrors) Write(b []byte) (int, error) {
	if c.status != 0 {
		c.text.Write(b[:min(len(b), max(textMax-c.text.Len(), 0))])
		return len(b), nil
	}
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (c *contentErrors) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func partialParam(r *http.Request) (bool, error) {
	q, err := query(r, "partial")
	if err != nil {
		return false, err
	}
	s, ok := q["partial"]
	if !ok {
		return false, nil
	}
	partial, err := strconv.ParseBool(s)
	if err != nil {
		return false, &mustgather.FieldError{Field: "partial", Message: fmt.Sprintf("must be true or false; got %q", clip(s))}
	}
	return partial, nil
}

// downloadable reports, as an error, why g's archive cannot be had.
func downloadable(g mustgather.Gathering, partial bool) error {
	switch {
	case g.Status == mustgather.StatusCompleted && g.ArchiveName != "":
		return nil
	case g.Status == mustgather.StatusCompleted:
		return fmt.Errorf("%w: gathering %d completed without an archive", mustgather.ErrNotFound, g.ID)
	case g.Status == mustgather.StatusError && g.ArchiveName != "" && partial:
		return nil
	case g.Status == mustgather.StatusError && g.ArchiveName != "":
		return &notCompletedError{g: g, hint: "; it ended in error, ask for its partial archive with ?partial=true"}
	case g.Status == mustgather.StatusError:
		return &notCompletedError{g: g, hint: "; it ended in error without an archive"}
	}
	return &notCompletedError{g: g, hint: "; ask again when its status is completed"}
}

// attachment is the Content-Disposition that makes browsers and `curl -OJ`
// save the archive under its name.
func attachment(name string) string {
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			// mime quotes or RFC 2231-encodes what needs it.
			return mime.FormatMediaType("attachment", map[string]string{"filename": name})
		}
	}
	return `attachment; filename="` + name + `"`
}

// lookup finds the gathering that ref names: a number is an id; otherwise,
// or when there is no gathering with that id, ref is a custom-name and the
// newest gathering with it is the one.
func lookup(ctx context.Context, s mustgather.Store, ref string) (mustgather.Gathering, error) {
	return resolve(ref,
		func(id mustgather.ID) (mustgather.Gathering, error) { return s.Get(ctx, id) },
		func(name string) (mustgather.Gathering, error) { return s.GetByName(ctx, name) })
}

// resolve finds what ref names, by id and then by custom-name, as the
// routes that take either do: byID and byName answer mustgather.ErrNotFound
// for nothing there. A name that no request could have given matches
// nothing; byName never sees it.
func resolve[T any](ref string, byID func(mustgather.ID) (T, error), byName func(string) (T, error)) (T, error) {
	if id, ok := mustgather.ParseID(ref); ok {
		v, err := byID(id)
		if !errors.Is(err, mustgather.ErrNotFound) {
			return v, err
		}
	}
	var none T
	// Made only when needed: a lookup by custom-name that finds its
	// gathering should not format an error.
	notFound := func() error {
		return fmt.Errorf("%w: no gathering has id or custom-name %q", mustgather.ErrNotFound, clip(ref))
	}
	if !mustgather.IsCustomName(ref) {
		return none, notFound()
	}
	v, err := byName(ref)
	if errors.Is(err, mustgather.ErrNotFound) {
		return none, notFound()
	}
	return v, err
}
