// Package recorder is the function that keeps the gathering records up to
// date: it applies each status event to the store. Applying is idempotent
// and ordered by the update's sequence number, so a repeated, late or
// out-of-order event never overwrites a newer state. With a signing key, it
// applies only events signed with it: anyone who can post to a Broker
// could otherwise end a gathering.
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
	key    []byte
}

// Option changes how a Recorder works.
type Option func(*Recorder)

// WithSigningKey makes the Recorder apply only status events signed with
// key (eventing.Verify); it drops the others with a warning. An empty key
// changes nothing.
func WithSigningKey(key []byte) Option { return func(r *Recorder) { r.key = key } }

// New returns a Recorder writing to store. log and reg may be nil.
func New(store mustgather.Store, log *slog.Logger, reg prometheus.Registerer, opts ...Option) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mustgather_recorder_events_total",
		Help: "Status events handled, by result: applied, stale (ignored), dropped, or, with a signing key, unsigned or forged (dropped).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	r := &Recorder{store: store, log: log, events: c}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Handle applies one status event. A stale event, or one for a gathering
// that does not exist, is acknowledged and ignored, as is, with a signing
// key, one that is unsigned or badly signed; a store failure is returned so
// that the event comes again.
func (r *Recorder) Handle(ctx context.Context, e cloudevents.Event) error {
	if len(r.key) > 0 {
		if err := eventing.Verify(e, r.key); err != nil {
			result := "forged"
			if errors.Is(err, eventing.ErrUnsigned) {
				result = "unsigned"
			}
			r.events.WithLabelValues(result).Inc()
			r.log.Warn("status event not applied: its signature does not verify", "err", err, "source", e.Source(), "subject", e.Subject())
			return nil
		}
	}
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
