// Package httpevents carries the project's CloudEvents over HTTP the
// Knative way: a Receiver answers the deliveries of a Knative Trigger (or
// any CloudEvents HTTP sender), in binary or structured mode, and a Sink
// sends events to K_SINK, the address a SinkBinding gives, retrying with
// back-off and keeping what it cannot deliver as a dead-letter record.
//
// Both use sdk-go's HTTP protocol binding; nothing here parses or writes a
// CloudEvent by hand.
package httpevents

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
)

// Handler handles one event. nil means done; an error wrapping
// eventing.ErrMalformed means the event can never be handled (it is
// dropped); eventing.ErrBusy means not now; any other error means try
// again.
type Handler func(ctx context.Context, e cloudevents.Event) error

// MaxEventBytes bounds the body of one delivery: a status event carries at
// most 64 KiB of output, which JSON may escape to several times that.
const MaxEventBytes = 1 << 20

// BusyRetryAfter is the Retry-After, in seconds, of an answer to an event
// that a busy handler could not take.
const BusyRetryAfter = 5

// Receiver is an http.Handler for CloudEvents deliveries. Each event goes
// to the Handler registered for its type. It answers as a Knative Trigger
// expects: 200 when the event was handled, and also when it must be
// dropped (undecodable, malformed, or of a type nobody here takes), since
// delivering it again would change nothing; 429 with Retry-After when the
// handler is busy; 503 when the handler failed and the event is to come
// again.
type Receiver struct {
	log      *slog.Logger
	mu       sync.RWMutex
	handlers map[string]Handler
	received *prometheus.CounterVec
}

// NewReceiver returns a Receiver without handlers. log and reg may be nil.
func NewReceiver(log *slog.Logger, reg prometheus.Registerer) *Receiver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mustgather_http_events_received_total",
		Help: "CloudEvents received over HTTP, by answer: handled (200), dropped (200: undecodable, malformed or of a type no function here takes), busy (429) or failed (503, to be delivered again).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return &Receiver{log: log, handlers: map[string]Handler{}, received: c}
}

// Handle sends the events of each of types to h.
func (r *Receiver) Handle(h Handler, types ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range types {
		r.handlers[t] = h
	}
}

// Also sends the events of each of types to h too, after the handler
// registered for the type before, if any: for a process that runs two
// functions that take the same events. An error of the first handler is
// the answer, and h does not see the event until it comes again.
func (r *Receiver) Also(h Handler, types ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range types {
		first, ok := r.handlers[t]
		if !ok {
			r.handlers[t] = h
			continue
		}
		r.handlers[t] = func(ctx context.Context, e cloudevents.Event) error {
			if err := first(ctx, e); err != nil {
				return err
			}
			return h(ctx, e)
		}
	}
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	req.Body = http.MaxBytesReader(w, req.Body, MaxEventBytes)
	ctx := req.Context()
	e, err := binding.ToEvent(ctx, cehttp.NewMessageFromHttpRequest(req))
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		r.drop(w, "event not decoded", "content-type", req.Header.Get("Content-Type"), "err", err)
		return
	}
	r.mu.RLock()
	h, ok := r.handlers[e.Type()]
	r.mu.RUnlock()
	if !ok {
		r.drop(w, "no function here takes events of this type", "event", e.ID(), "type", e.Type(), "source", e.Source())
		return
	}
	err = h(ctx, *e)
	switch {
	case err == nil:
		r.received.WithLabelValues("handled").Inc()
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, eventing.ErrMalformed):
		r.drop(w, "malformed event", "event", e.ID(), "type", e.Type(), "source", e.Source(), "err", err)
	case errors.Is(err, eventing.ErrBusy):
		r.received.WithLabelValues("busy").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(BusyRetryAfter))
		http.Error(w, err.Error(), http.StatusTooManyRequests)
	default:
		r.received.WithLabelValues("failed").Inc()
		r.log.Warn("event handler failed; the sender is to deliver it again", "event", e.ID(), "type", e.Type(), "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}

// drop answers 200 for an event that no delivery will ever get handled,
// logging why.
func (r *Receiver) drop(w http.ResponseWriter, why string, attrs ...any) {
	r.received.WithLabelValues("dropped").Inc()
	r.log.Warn("event dropped: "+why, attrs...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("dropped: " + why + "\n"))
}
