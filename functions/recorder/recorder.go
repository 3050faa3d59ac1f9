// Package recorder is the function that keeps the gathering records up to
// date: it applies each status event to the store. Applying is idempotent
// and ordered by the update's sequence number, so a repeated, late or
// out-of-order event never overwrites a newer state.
package recorder

import (
	"context"
	"errors"
	"log/slog"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Recorder is the recorder function.
type Recorder struct {
	store  mustgather.Store
	log    *slog.Logger
	events *prometheus.CounterVec
}

// New returns a Recorder writing to store. reg may be nil.
func New(store mustgather.Store, log *slog.Logger, reg prometheus.Registerer) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mustgather_recorder_events_total",
		Help: "Status events handled, by result: applied, stale (ignored) or dropped.",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return &Recorder{store: store, log: log, events: c}
}

// Handle applies one status event. A stale event, or one for a gathering
// that does not exist, is acknowledged and ignored; a store failure is
// returned so that the event comes again.
func (r *Recorder) Handle(ctx context.Context, e cloudevents.Event) error {
	u, err := eventing.ParseStatus(e)
	if err != nil {
		r.events.WithLabelValues("dropped").Inc()
		return err
	}
	g, err := r.store.Apply(ctx, u)
	switch {
	case errors.Is(err, mustgather.ErrStale):
		r.events.WithLabelValues("stale").Inc()
		r.log.Debug("stale status event ignored", "gathering", u.ID, "seq", u.Seq, "status", u.Status, "current", g.Status)
		return nil
	case errors.Is(err, mustgather.ErrNotFound), errors.Is(err, mustgather.ErrTransition):
		r.events.WithLabelValues("dropped").Inc()
		r.log.Warn("status event dropped", "gathering", u.ID, "seq", u.Seq, "err", err)
		return nil
	case err != nil:
		return err
	}
	r.events.WithLabelValues("applied").Inc()
	if g.Status.Terminal() {
		r.log.Info("gathering ended", "gathering", g.ID, "status", g.Status, "archive", g.ArchiveName, "size", g.ArchiveSize)
	}
	return nil
}
