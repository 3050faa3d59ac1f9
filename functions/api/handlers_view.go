package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// synced reports whether the view, if there is one, holds every write
// acknowledged before now, so that a read may be answered from it; if it
// does not within its wait, the read goes to the store.
func synced(ctx context.Context, d Deps) bool {
	if d.View == nil {
		return false
	}
	err := d.View.Sync(ctx)
	if err != nil && ctx.Err() == nil {
		d.Logger.WarnContext(ctx, "reading the store: the view is behind", "err", err)
	}
	return err == nil
}

// getFromView answers GET /must-gather/{id} from the view, as
// authorizedGathering and handleGet answer it from the store.
func getFromView(w http.ResponseWriter, r *http.Request, d Deps) {
	rec, err := lookupView(d.View, r.PathValue("id"))
	if err != nil {
		respondUnlessDenied(w, r, d, err)
		return
	}
	if _, err := authorize(d, r, rec.Server, mustgather.AccessAdmin); err != nil {
		respondErr(w, r, d.Logger, err)
		return
	}
	if rec.Body != nil {
		w.Header().Set("ETag", etag(mustgather.Gathering{Revision: rec.Revision}))
		writeEncoded(w, http.StatusOK, rec.Body)
		return
	}
	// Kept without its long exec-output.
	g, err := d.Store.Get(r.Context(), rec.ID)
	if err != nil {
		respondErr(w, r, d.Logger, err)
		return
	}
	w.Header().Set("ETag", etag(g))
	writeJSON(w, http.StatusOK, g)
}

// lookupView finds the record that ref names, as lookup finds the
// gathering.
func lookupView(v *view.View, ref string) (*view.Record, error) {
	held := func(rec *view.Record, ok bool) (*view.Record, error) {
		if !ok {
			return nil, mustgather.ErrNotFound
		}
		return rec, nil
	}
	return resolve(ref,
		func(id mustgather.ID) (*view.Record, error) { return held(v.Get(id)) },
		func(name string) (*view.Record, error) { return held(v.GetByName(name)) })
}

// listPage is how many records a streamed list takes from the view at a
// time; only they, and the bytes not yet sent, are held for it.
const listPage = 256

// listBuffered is the longest limit whose list is answered in one piece,
// with Content-Length; a longer or unlimited list is streamed in chunks of
// about listChunk bytes.
const (
	listBuffered = 1000
	listChunk    = 32 << 10
)

// listBufs recycles the buffers lists are written through, so that a list
// allocates next to nothing per answer.
var listBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*listChunk); return &b }}

// streamList answers GET /must-gather from the view as the store's list
// is answered. A list of up to listBuffered is written in one piece; a
// longer one as it goes, so that the answer of 100,000 gatherings holds no
// more in memory than one of 200. A record that the view keeps without its
// exec-output is read from the store; one deleted meanwhile is left out.
// An error once the answer has begun can only cut it off.
//
// A list of up to listBuffered keeps each record's element form with the
// record (view.Record.Element): such lists ask for the newest records, or
// page, again and again, and then cost a copy of each. A longer list makes
// the form as it goes and keeps nothing, so that one list of every
// gathering does not double the view's memory.
func streamList(w http.ResponseWriter, r *http.Request, d Deps, f mustgather.Filter) {
	after, left := f.After, f.Limit
	if left <= 0 {
		left = -1 // no limit
	} else if !f.Paged {
		after = d.View.Before(f, left)
	}
	whole := left > 0 && left <= listBuffered
	bufp := listBufs.Get().(*[]byte)
	buf := append((*bufp)[:0], '[')
	defer func() {
		if cap(buf) <= 4*listChunk {
			*bufp = buf[:0]
			listBufs.Put(bufp)
		}
	}()
	if !whole {
		jsonHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
	}
	var page []*view.Record
	first := true
	for left != 0 {
		n := listPage
		if left > 0 {
			n = min(n, left)
		}
		page = d.View.Page(page[:0], f, after, n)
		if len(page) == 0 {
			break
		}
		for _, rec := range page {
			b := rec.Body
			if b == nil {
				g, err := d.Store.Get(r.Context(), rec.ID)
				if errors.Is(err, mustgather.ErrNotFound) {
					continue
				}
				if err != nil {
					if whole {
						respondErr(w, r, d.Logger, err)
						return
					}
					d.Logger.ErrorContext(r.Context(), "list cut off", "gathering", rec.ID, "err", err)
					panic(http.ErrAbortHandler)
				}
				b = encodeJSON(g)
			}
			if first {
				buf = append(buf, "\n  "...)
				first = false
			} else {
				buf = append(buf, ",\n  "...)
			}
			if whole && rec.Body != nil {
				buf = append(buf, rec.Element(appendIndented)...)
			} else {
				buf = appendIndented(buf, b)
			}
			if left > 0 {
				left--
			}
			if !whole && len(buf) >= listChunk {
				if _, err := w.Write(buf); err != nil {
					return // the client went away
				}
				buf = buf[:0]
			}
		}
		after = page[len(page)-1].ID
	}
	if !first {
		buf = append(buf, '\n')
	}
	buf = append(buf, "]\n"...)
	if whole {
		writeEncoded(w, http.StatusOK, buf)
		return
	}
	_, _ = w.Write(buf)
}

// appendIndented appends b, an object as encodeJSON made it, indented one
// level further as an element of a list: every line after the first gets
// two more spaces, and the last newline goes. A newline within a string
// is escaped, so every newline in b is one that Encode put between lines.
func appendIndented(dst, b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(dst, b...)
		}
		dst = append(dst, b[:i+1]...)
		dst = append(dst, "  "...)
		b = b[i+1:]
	}
}
