// Package notifier is the function that pushes gathering status to
// browsers and tools as Server-Sent Events: GET /events streams every
// gathering's changes, GET /must-gather/{id}/events one gathering's until
// it ends.
//
// Each process watches the gathering records itself (one watch, however
// many clients), so a client sees every change whichever replica it
// reached. Every event's id is the revision of the record it shows;
// revisions grow across all records, so a client that reconnects with
// Last-Event-ID gets, from a watch of its own that resumes there, the
// latest state of each gathering written since, and then the live
// changes, never an id it has had.
package notifier

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Config configures a Notifier. A zero field takes its value from
// DefaultConfig.
type Config struct {
	// Heartbeat is how often an idle stream gets a comment, so that
	// proxies do not close it.
	Heartbeat time.Duration
	// ClientBuffer is how many events a stream may fall behind before it
	// is dropped; its client then reconnects with Last-Event-ID.
	ClientBuffer int
	// MaxClients is how many streams one process serves at once; more are
	// answered 503 with Retry-After.
	MaxClients int
	// WriteTimeout bounds each write to a client: one that takes longer
	// is gone, and its stream ends.
	WriteTimeout time.Duration
}

// DefaultConfig returns the defaults documented in the README, which also
// stand in for the zero fields of a Config.
func DefaultConfig() Config {
	return Config{Heartbeat: 15 * time.Second, ClientBuffer: 256, MaxClients: 1000, WriteTimeout: 30 * time.Second}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.ClientBuffer <= 0 {
		c.ClientBuffer = d.ClientBuffer
	}
	if c.MaxClients <= 0 {
		c.MaxClients = d.MaxClients
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	return c
}

// Deps is what the notifier needs from the outside world; Store and
// Changes are required.
type Deps struct {
	Logger  *slog.Logger     // nil discards logs
	Store   mustgather.Store // reads a gathering's state when its stream starts
	Changes mustgather.Changes
	// Guard authorizes requests as the API does.
	Guard api.Guard
	// Registry receives the notifier's metrics; nil means none.
	Registry prometheus.Registerer
}

// Notifier serves the event streams from one watch of the records.
type Notifier struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	m       metrics
	hub     *hub
	clients chan struct{} // one token per open stream, at most MaxClients

	// ready is closed once the watch has caught up: from then on a
	// subscriber misses no change.
	ready     chan struct{}
	readyOnce sync.Once
	// stopped ends when Run returns, and with it every stream.
	stopped context.Context
	stop    context.CancelFunc
}

// New returns a Notifier; it serves streams once Run has started. It
// panics when Store or Changes is nil, a wiring mistake.
func New(cfg Config, d Deps) *Notifier {
	if d.Store == nil || d.Changes == nil {
		panic("notifier.New: Store and Changes are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	n := &Notifier{
		cfg: cfg, d: d, log: d.Logger, m: newMetrics(d.Registry),
		clients: make(chan struct{}, cfg.MaxClients),
		ready:   make(chan struct{}),
	}
	n.stopped, n.stop = context.WithCancel(context.Background())
	n.hub = newHub()
	return n
}

// retryWatch is how long Run waits before it watches again after the
// watch failed.
const retryWatch = time.Second

// Run watches the gathering records and fans each change out to the
// streams until ctx ends; then it ends every stream and returns nil. A
// watch that fails (the NATS connection closed) is started again from the
// last revision it passed on, so no change is lost in between.
func (n *Notifier) Run(ctx context.Context) error {
	// Stopped first, so that a stream the hub ends knows it was not
	// dropped.
	defer n.hub.stop()
	defer n.stop()
	after := mustgather.FromNow
	for {
		err := n.d.Changes.Watch(ctx, after, func(c mustgather.Change) error {
			if c.CaughtUp {
				n.readyOnce.Do(func() { close(n.ready) })
				return nil
			}
			if after != mustgather.FromNow && c.Gathering.Revision <= after {
				return nil
			}
			after = c.Gathering.Revision
			n.hub.publish(newEvent(c.Gathering))
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		n.log.ErrorContext(ctx, "watch of the gathering records ended; watching again", "after", after, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retryWatch):
		}
	}
}

// Ready reports whether the notifier serves: its watch has caught up, and
// it has not stopped.
func (n *Notifier) Ready(context.Context) error {
	if n.stopped.Err() != nil {
		return errors.New("notifier: stopped")
	}
	select {
	case <-n.ready:
		return nil
	default:
		return errors.New("notifier: watch of the gathering records not started yet")
	}
}

// Routes returns the notifier's HTTP routes, to be served beside the API
// (api.Deps.Routes).
func (n *Notifier) Routes() []api.Route {
	g := n.d.Guard
	return []api.Route{
		{Pattern: "GET /events", Handler: g.RequireAccess(mustgather.AccessAdmin, n.handleAll())},
		// A gathering's stream is reviewed against its own cluster once
		// the handler knows which that is.
		{Pattern: "GET /must-gather/{id}/events", Handler: g.RequireToken(n.handleOne())},
	}
}
