package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
)

// The values of EVENTS_TRANSPORT.
const (
	// transportNATS: events go through the JetStream stream, and the
	// runner and recorder read it with durable consumers (make run).
	transportNATS = "nats"
	// transportHTTP: events come in as CloudEvents over HTTP on POST /,
	// as a Knative Trigger delivers them, and go out to K_SINK.
	transportHTTP = "http"
)

// minSigningKey is the shortest EVENTS_SIGNING_KEY: HMAC-SHA256's own
// block of security.
const minSigningKey = 32

// checkEvents reports what is wrong with the event settings, and hands
// the signing key to both transports.
func (c *config) checkEvents() []error {
	var errs []error
	switch c.Transport {
	case transportNATS:
	case transportHTTP:
		if c.Sink.Sink == "" && (c.has("api") || c.has("runner")) {
			errs = append(errs, errors.New("K_SINK: required with EVENTS_TRANSPORT=http by the api and the runner, which send events"))
		}
	default:
		errs = append(errs, fmt.Errorf("EVENTS_TRANSPORT: %q is neither nats nor http", c.Transport))
	}
	if c.SigningKey != "" && len(c.SigningKey) < minSigningKey {
		// The length of a secret is all that may be said of it.
		errs = append(errs, fmt.Errorf("EVENTS_SIGNING_KEY: shorter than %d bytes", minSigningKey))
	}
	if c.SigningKey != "" {
		c.Bus.SigningKey = []byte(c.SigningKey)
		c.Sink.SigningKey = []byte(c.SigningKey)
	}
	return errs
}

// openTransport opens what sends events (the bus, or a Sink to K_SINK
// that keeps dead letters in the bus's stream) and, over HTTP, the
// receiver of POST /.
func (d *deps) openTransport(cfg config) error {
	if cfg.Transport != transportHTTP {
		return nil
	}
	if cfg.SigningKey == "" {
		d.log.Warn("EVENTS_SIGNING_KEY is not set: events are not signed, and the recorder applies status events from anyone who can post to the Broker")
	}
	d.receiver = httpevents.NewReceiver(d.log.With("component", "events"), d.reg)
	if cfg.Sink.Sink == "" {
		return nil
	}
	var err error
	d.sink, err = httpevents.NewSink(cfg.Sink, d.bus, d.log.With("component", "sink"), d.reg)
	return err
}

// events returns what publishes the events of source.
func (d *deps) events(source string) mustgather.Events {
	if d.sink != nil {
		return journaled{bus: d.bus.WithSource(source), sink: d.sink.WithSource(source)}
	}
	return d.bus.WithSource(source)
}

// journaled publishes each event into the events stream first and then
// sends it to K_SINK. The stream is the journal of every event, which
// keeps each for EVENTS_MAX_AGE whatever the transport, and it says whether
// another reaper already sent a requeue attempt, which K_SINK cannot. Each step is idempotent (the stream drops a copy by event id, the
// recorder and the runner ignore a copy), so a caller that retries after a
// failure of the second step repeats neither.
type journaled struct {
	bus  *natsbus.Bus
	sink *httpevents.Sink
}

var _ mustgather.Events = journaled{}

// Requested gives K_SINK at most requestedTimeout: the api's client
// waits meanwhile, and a gathering whose event did not get through is
// requeued by the reaper.
func (j journaled) Requested(ctx context.Context, g mustgather.Gathering) error {
	if err := j.bus.Requested(ctx, g); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestedTimeout)
	defer cancel()
	return j.sink.Requested(ctx, g)
}

// requestedTimeout bounds sending a gathering.requested event to K_SINK.
const requestedTimeout = 5 * time.Second

// Requeued sends attempt n only if the stream did not hold it yet.
func (j journaled) Requeued(ctx context.Context, g mustgather.Gathering, attempt int) (bool, error) {
	sent, err := j.bus.Requeued(ctx, g, attempt)
	if err != nil || !sent {
		return false, err
	}
	return j.sink.Requeued(ctx, g, attempt)
}

func (j journaled) Updated(ctx context.Context, u mustgather.Update) error {
	if err := j.bus.Updated(ctx, u); err != nil {
		return err
	}
	return j.sink.Updated(ctx, u)
}

// withReceiver adds the receiver of CloudEvents on POST / to h when events
// come over HTTP to a function of this process.
func (d *deps) withReceiver(cfg config, h http.Handler) http.Handler {
	if d.receiver == nil || !(cfg.has("runner") || cfg.has("recorder") || cfg.has("trigger") || cfg.has("notifier") && len(cfg.Sinks.Sinks) > 0) {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", d.receiver)
	mux.Handle("/", h)
	return mux
}

// receiveStatus hands status events to the recorder: from the durable
// consumer "recorder", or from POST /.
func receiveStatus(d *deps, g *group, errc chan<- error, rec *recorder.Recorder, log *slog.Logger) {
	if d.receiver != nil {
		d.receiver.Handle(rec.Handle, eventing.StatusTypes...)
		return
	}
	g.wg.Go(func() {
		errc <- d.bus.Consume(g.ctx, natsbus.ConsumerConfig{
			Durable: "recorder", Filter: d.bus.AllStatusSubjects(), Concurrency: 64, Logger: log,
		}, rec.Handle)
	})
}

// receiveRequested hands requested events to the runner: from the durable
// consumer "runner", which acknowledges each once its gathering has ended,
// or from POST /, answered once the gathering is claimed, while it runs on
// in the background until it ends or the group stops.
func receiveRequested(cfg config, d *deps, g *group, errc chan<- error, r *runner.Runner, log *slog.Logger) {
	if d.receiver != nil {
		bg := r.Background(g.ctx, cfg.RunnerConcurrency)
		d.receiver.Handle(bg.Handle, eventing.TypeRequested)
		g.wg.Go(func() {
			<-g.ctx.Done()
			bg.Wait()
		})
		return
	}
	g.wg.Go(func() {
		errc <- d.bus.Consume(g.ctx, natsbus.ConsumerConfig{
			Durable: "runner", Filter: d.bus.RequestedSubject(), Concurrency: cfg.RunnerConcurrency, AckWait: cfg.Store.LeaseTTL,
			Logger: log,
		}, r.Handle)
	})
}
