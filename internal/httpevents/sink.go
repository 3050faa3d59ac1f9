package httpevents

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/client"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Config configures a Sink. A zero duration takes its value from
// DefaultConfig.
type Config struct {
	// Sink is the URL events are sent to: K_SINK, which a SinkBinding
	// sets to the Broker's address.
	Sink string
	// Overrides is K_CE_OVERRIDES as a SinkBinding sets it: JSON
	// {"extensions": {"name": "value", ...}} added to every event sent.
	Overrides string
	// CACerts is K_CA_CERTS: PEM certificates, besides the system's, that
	// the sink's certificate may chain to.
	CACerts string
	// Source is the CloudEvents source of the events sent through Updated
	// and Requeued.
	Source string
	// RetryFor is how long an event is retried before it is given up on
	// and kept as a dead-letter record.
	RetryFor time.Duration
	// AttemptTimeout bounds one attempt.
	AttemptTimeout time.Duration
	// FirstBackOff is the wait after the first failed attempt; each next
	// wait is twice as long, up to MaxBackOff.
	FirstBackOff time.Duration
	MaxBackOff   time.Duration
	// SigningKey, if set, signs every event sent (eventing.Sign).
	SigningKey []byte
}

// DefaultConfig returns the defaults documented in the README, which also
// stand in for the zero durations of a Config.
func DefaultConfig() Config {
	return Config{
		Source:         eventing.SourceRunner,
		RetryFor:       time.Minute,
		AttemptTimeout: 10 * time.Second,
		FirstBackOff:   100 * time.Millisecond,
		MaxBackOff:     5 * time.Second,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.Source == "" {
		c.Source = d.Source
	}
	if c.RetryFor == 0 {
		c.RetryFor = d.RetryFor
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = d.AttemptTimeout
	}
	if c.FirstBackOff == 0 {
		c.FirstBackOff = d.FirstBackOff
	}
	if c.MaxBackOff == 0 {
		c.MaxBackOff = d.MaxBackOff
	}
}

// DeadLetters keeps the events a Sink gave up on; natsbus.Bus is one.
type DeadLetters interface {
	DeadLetter(ctx context.Context, e cloudevents.Event, why string) error
}

// ErrDeadLettered marks an event that was not delivered within RetryFor
// (or that the sink refused for good) and is kept as a dead-letter record.
var ErrDeadLettered = errors.New("event not delivered; kept as a dead-letter record")

// Sink sends events to one URL with sdk-go's HTTP client, in binary mode,
// as Knative's own senders do. It implements mustgather.Events.
type Sink struct {
	cfg       Config
	client    client.Client
	overrides map[string]any
	dead      DeadLetters
	log       *slog.Logger
	m         *sinkMetrics
}

var _ mustgather.Events = (*Sink)(nil)

type sinkMetrics struct {
	sent    *prometheus.CounterVec
	retries prometheus.Counter
}

// NewSink returns a Sink to cfg.Sink that keeps what it gives up on in
// dead. log and reg may be nil.
func NewSink(cfg Config, dead DeadLetters, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.Sink)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sink %q is not an http or https URL", cfg.Sink)
	}
	var overrides struct {
		Extensions map[string]any `json:"extensions"`
	}
	if cfg.Overrides != "" {
		if err := json.Unmarshal([]byte(cfg.Overrides), &overrides); err != nil {
			return nil, fmt.Errorf("CloudEvents overrides: %w", err)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACerts != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(cfg.CACerts)) {
			return nil, errors.New("CA certificates of the sink: no PEM certificate found")
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	p, err := cehttp.New(cehttp.WithTarget(cfg.Sink), cehttp.WithClient(http.Client{Transport: transport}))
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", cfg.Sink, err)
	}
	// No defaulters: an event is signed before it is sent, and must
	// leave as signed.
	c, err := client.New(p)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", cfg.Sink, err)
	}
	m := &sinkMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_sink_events_total",
			Help: "Events sent to K_SINK, by result: delivered, dead_lettered (not delivered in time; kept in the event stream's dead-letter subject) or lost (not delivered, nor kept).",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_sink_retries_total",
			Help: "Attempts to send an event to K_SINK that failed and were retried.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.retries)
	}
	return &Sink{cfg: cfg, client: c, overrides: overrides.Extensions, dead: dead, log: log, m: m}, nil
}

// WithSource returns a Sink to the same URL whose Updated and Requeued
// events carry source.
func (s *Sink) WithSource(source string) *Sink {
	c := *s
	c.cfg.Source = source
	return &c
}

// Requested sends the gathering.requested event of g.
func (s *Sink) Requested(ctx context.Context, g mustgather.Gathering) error {
	e, err := eventing.NewRequested(g)
	if err != nil {
		return err
	}
	return s.Send(ctx, e)
}

// Requeued sends requeue attempt n of the gathering.requested event of g.
// Unlike a stream, a sink cannot say whether another reaper sent the same
// attempt: it always reports true once the event is delivered, and the
// claim keeps a gathering from running twice.
func (s *Sink) Requeued(ctx context.Context, g mustgather.Gathering, attempt int) (bool, error) {
	e, err := eventing.NewRequeued(g, attempt, s.cfg.Source, time.Now())
	if err != nil {
		return false, err
	}
	if err := s.Send(ctx, e); err != nil {
		return false, err
	}
	return true, nil
}

// Updated sends the status event of u.
func (s *Sink) Updated(ctx context.Context, u mustgather.Update) error {
	e, err := eventing.NewStatus(u, s.cfg.Source)
	if err != nil {
		return err
	}
	return s.Send(ctx, e)
}

// Send delivers e to the sink, signed if a key is set. A failed attempt
// (no answer, or 404, 408, 409, 429 or a 5xx other than 501, as Knative
// retries) is retried after a back-off until RetryFor has passed or ctx
// ends; then, or at once on any other answer, e is kept as a dead-letter
// record and Send returns an error wrapping ErrDeadLettered.
func (s *Sink) Send(ctx context.Context, e cloudevents.Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("send %s: %w", e.ID(), err)
	}
	for k, v := range s.overrides {
		e.SetExtension(k, v)
	}
	if len(s.cfg.SigningKey) > 0 {
		eventing.Sign(&e, s.cfg.SigningKey)
	}
	giveUp := time.Now().Add(s.cfg.RetryFor)
	delay := s.cfg.FirstBackOff
	var last error
	attempts := 0
	for {
		attempts++
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
		res := s.client.Send(actx, e)
		cancel()
		if cloudevents.IsACK(res) {
			s.m.sent.WithLabelValues("delivered").Inc()
			return nil
		}
		last = res
		if !retryable(res) || time.Now().Add(delay).After(giveUp) || ctx.Err() != nil {
			break
		}
		s.m.retries.Inc()
		s.log.Debug("send event; retrying", "event", e.ID(), "type", e.Type(), "attempt", attempts, "retry_in", delay, "err", res)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		delay = min(delay*2, s.cfg.MaxBackOff)
	}
	why := fmt.Sprintf("not delivered to %s after %d attempts: %v", s.cfg.Sink, attempts, last)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.AttemptTimeout)
	defer cancel()
	if err := s.dead.DeadLetter(dctx, e, why); err != nil {
		s.m.sent.WithLabelValues("lost").Inc()
		s.log.Error("event lost: neither delivered nor kept as a dead letter", "event", e.ID(), "type", e.Type(), "why", why, "err", err)
		return fmt.Errorf("send %s: %s; %w", e.ID(), why, err)
	}
	s.m.sent.WithLabelValues("dead_lettered").Inc()
	s.log.Error("event kept as a dead letter", "event", e.ID(), "type", e.Type(), "why", why)
	return fmt.Errorf("send %s: %s: %w", e.ID(), why, ErrDeadLettered)
}

// retryable reports whether a failed send may succeed later: no answer, or
// an answer that Knative's own senders retry.
func retryable(res error) bool {
	var r *cehttp.Result
	if !cloudevents.ResultAs(res, &r) {
		return true
	}
	switch c := r.StatusCode; {
	case c == http.StatusNotFound, c == http.StatusRequestTimeout, c == http.StatusConflict, c == http.StatusTooManyRequests:
		return true
	case c >= 500:
		return c != http.StatusNotImplemented
	}
	return false
}
