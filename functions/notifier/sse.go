package notifier

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// What every stream starts with: the reconnection delay for the client
// (3 s), and, once it is subscribed, a comment saying so. A client that
// reads the gatherings after it has seen ": connected" misses no change.
const (
	streamStart = "retry: 3000\n: connected\n\n"
	heartbeat   = ": heartbeat\n\n"
)

// startWait bounds how long a stream waits for the notifier's watch to
// start, as at the start of the process.
const startWait = 10 * time.Second

// busyRetry is the Retry-After of a stream refused because the process
// serves its maximum, or is starting or stopping.
const busyRetry = 3 * time.Second

var (
	errCaughtUp = errors.New("caught up")
	errDropped  = errors.New("dropped: the client read too slowly")
)

// handleAll streams every gathering's changes: from now, or, with
// Last-Event-ID, from after that id.
func (n *Notifier) handleAll() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, resume, err := n.lastEventID(r)
		if err != nil {
			n.d.Guard.Error(w, r, err)
			return
		}
		st, ok := n.open(w, r, 0)
		if !ok {
			return
		}
		defer st.close()
		if resume {
			// A watch of its own sends the client what it missed; the hub
			// queues what comes meanwhile, and the revisions tell which of
			// that the client has had.
			st.last = after
			err := n.d.Changes.Watch(st.ctx, after, func(c mustgather.Change) error {
				if c.CaughtUp {
					return errCaughtUp
				}
				select {
				case <-st.sub.gone:
					if st.n.stopped.Err() == nil {
						return errDropped
					}
					return nil
				default:
				}
				_, err := st.send(newEvent(c.Gathering))
				return err
			})
			if !errors.Is(err, errCaughtUp) {
				st.ended(err)
				return
			}
		}
		st.ended(st.follow())
	})
}

// handleOne streams one gathering: its state now (or, with Last-Event-ID,
// only if it changed after that id), then its changes, and ends after its
// final state.
func (n *Notifier) handleOne() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := n.d.Guard
		after, resume, err := n.lastEventID(r)
		if err != nil {
			g.ErrorUnlessDenied(w, r, err)
			return
		}
		found, err := api.Lookup(r.Context(), n.d.Store, r.PathValue("id"))
		if err != nil {
			g.ErrorUnlessDenied(w, r, err)
			return
		}
		if _, err := g.Authorize(r, found.Server, mustgather.AccessAdmin); err != nil {
			g.Error(w, r, err)
			return
		}
		st, ok := n.open(w, r, found.ID)
		if !ok {
			return
		}
		defer st.close()
		if resume {
			st.last = after
		}
		// Read after subscribing, so that no change falls in between.
		cur, err := n.d.Store.Get(st.ctx, found.ID)
		if err != nil {
			st.ended(err)
			return
		}
		if _, err := st.send(newEvent(cur)); err != nil || cur.Status.Terminal() {
			st.ended(err)
			return
		}
		st.ended(st.follow())
	})
}

// lastEventID reads the Last-Event-ID header: the id of the last event a
// reconnecting client has. An id beyond the latest revision is none of
// this store's (one that was emptied since, as by `make clean`): the
// client starts afresh, as without it, rather than wait for the
// revisions to catch up with it.
func (n *Notifier) lastEventID(r *http.Request) (uint64, bool, error) {
	id, ok, err := lastEventID(r)
	if !ok || err != nil {
		return id, ok, err
	}
	latest, err := n.d.Changes.Revision(r.Context())
	if err != nil {
		return 0, false, err
	}
	if id > latest {
		n.log.InfoContext(r.Context(), "Last-Event-ID beyond the latest revision: the stream starts afresh", "last-event-id", id, "revision", latest)
		return 0, false, nil
	}
	return id, true, nil
}

func lastEventID(r *http.Request) (uint64, bool, error) {
	v := r.Header.Values("Last-Event-ID")
	if len(v) == 0 || v[0] == "" {
		return 0, false, nil
	}
	if len(v) > 1 {
		return 0, false, &mustgather.FieldError{Field: "Last-Event-ID", Message: "given more than once"}
	}
	id, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil || v[0][0] == '+' {
		return 0, false, &mustgather.FieldError{Field: "Last-Event-ID", Message: "must be the id of an event: a decimal number"}
	}
	return id, true, nil
}

// stream is one client's open event stream.
type stream struct {
	n      *Notifier
	w      http.ResponseWriter
	r      *http.Request
	rc     *http.ResponseController
	sub    *subscriber
	ctx    context.Context // ends when the client goes or the notifier stops
	cancel context.CancelFunc
	last   uint64 // the id of the last event the client has
}

// open admits a stream for the gathering only (0: all), subscribes it to
// the hub and starts the response. It reports false when the stream is not
// to go on: refused (it has answered why), the client gone, or a HEAD
// request, which gets the headers alone.
func (n *Notifier) open(w http.ResponseWriter, r *http.Request, only mustgather.ID) (*stream, bool) {
	st, err := n.admit(w, r, only)
	if err != nil {
		if r.Context().Err() == nil {
			n.d.Guard.Error(w, r, err)
		}
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	n.m.clients.Inc()
	if r.Method == http.MethodHead {
		st.close()
		return nil, false
	}
	if err := st.write([]byte(streamStart)); err != nil {
		st.close()
		return nil, false
	}
	return st, true
}

// admit takes a place for a stream and subscribes it to the hub.
func (n *Notifier) admit(w http.ResponseWriter, r *http.Request, only mustgather.ID) (*stream, error) {
	select {
	case n.clients <- struct{}{}:
	default:
		n.m.refused.Inc()
		return nil, &api.BusyError{What: "this server has as many event streams open as it serves", RetryAfter: busyRetry}
	}
	fail := func(err error) (*stream, error) {
		<-n.clients
		return nil, err
	}
	wait := time.NewTimer(startWait)
	defer wait.Stop()
	select {
	case <-n.ready:
	case <-wait.C:
		return fail(&api.BusyError{What: "the event streams are starting", RetryAfter: busyRetry})
	case <-n.stopped.Done():
		return fail(&api.BusyError{What: "the event streams are stopping", RetryAfter: busyRetry})
	case <-r.Context().Done():
		return fail(r.Context().Err())
	}
	sub, ok := n.hub.subscribe(only, n.cfg.ClientBuffer)
	if !ok {
		return fail(&api.BusyError{What: "the event streams are stopping", RetryAfter: busyRetry})
	}
	st := &stream{n: n, w: w, r: r, rc: http.NewResponseController(w), sub: sub}
	st.ctx, st.cancel = context.WithCancel(r.Context())
	context.AfterFunc(n.stopped, st.cancel)
	return st, nil
}

func (st *stream) close() {
	st.cancel()
	st.n.hub.unsubscribe(st.sub)
	st.n.m.clients.Dec()
	<-st.n.clients
}

// ended logs why a stream ended, when that is worth knowing.
func (st *stream) ended(err error) {
	switch {
	case errors.Is(err, errDropped), errors.Is(err, os.ErrDeadlineExceeded):
		// Its queue filled up, or a write to it did not finish in time.
		st.n.m.dropped.Inc()
		st.n.log.DebugContext(st.r.Context(), "event stream dropped: the client read too slowly", "path", st.r.URL.Path, "remote", st.r.RemoteAddr, "last-event-id", st.last, "err", err)
	case err == nil, st.ctx.Err() != nil:
		// Done, the client went away, or the notifier stopped.
	default:
		st.n.log.WarnContext(st.r.Context(), "event stream ended", "path", st.r.URL.Path, "remote", st.r.RemoteAddr, "err", err)
	}
}

// write sends b to the client at once, within the write timeout.
func (st *stream) write(b []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.n.cfg.WriteTimeout))
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// send writes e unless the client has had its id or a later one. It
// reports whether it wrote e.
func (st *stream) send(e event) (bool, error) {
	if e.revision <= st.last {
		return false, nil
	}
	if err := st.write(e.frame); err != nil {
		return false, err
	}
	st.last = e.revision
	st.n.m.sent.Inc()
	return true, nil
}

// follow sends the hub's events, and heartbeats while there are none,
// until the client goes, the hub drops the stream, the notifier stops, or,
// on a gathering's stream, the gathering has ended.
func (st *stream) follow() error {
	hb := time.NewTicker(st.n.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case e := <-st.sub.events:
			sent, err := st.send(e)
			if err != nil {
				return err
			}
			if sent && st.sub.only != 0 && e.final {
				return nil
			}
		case <-hb.C:
			if err := st.write([]byte(heartbeat)); err != nil {
				return err
			}
		case <-st.sub.gone:
			if st.n.stopped.Err() == nil {
				return errDropped
			}
			return nil
		case <-st.ctx.Done():
			return nil
		}
	}
}
