// Package sinks delivers the final status of each gathering,
// gathering.completed and gathering.failed, as CloudEvents over HTTP
// (binary mode, the sdk-go client) to the configured subscribers.
//
// Every notifier replica reads the status events through one durable
// JetStream consumer, so each final event is handled by one replica at a
// time; that replica sends it to every sink, each with its own retries
// (exponential backoff with jitter, up to a limit), and keeps the event's
// acknowledgement deadline extended meanwhile. A sink that got an event is
// recorded in a KV bucket, so a redelivered or republished event is not
// sent to it again; a sink that still fails after the limit, or refuses
// the event, gets a dead-letter record in a stream of its own. Delivery is
// at least once: a replica that dies between a sink's answer and the
// record sends that event to that sink again, with the same CloudEvents id.
package sinks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
)

// Source is the CloudEvents source of the events sent to subscribers,
// whichever function published the status they report, so that source and
// id together name one gathering's final status.
const Source = "/must-gather-functions/notifier"

// Config configures delivery. A zero field takes its value from
// DefaultConfig.
type Config struct {
	// Sinks are the subscribers' http(s) URLs. None: nothing is delivered.
	Sinks []string
	// Secret, if set, signs every request (SignatureHeader).
	Secret string
	// Presigned adds download-url and download-url-expires-at to the data of
	// a completed gathering. It needs Deps.Presign.
	Presigned bool
	// Retries is how many times a failed attempt is repeated before the
	// delivery to that sink is given up and dead-lettered.
	Retries int
	// Backoff is the delay before the first retry; each retry doubles it,
	// up to MaxBackoff, and each delay is drawn between half and all of it.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration
	// CAFile is a PEM file of CA certificates that https sinks may be
	// signed by, besides the system's roots.
	CAFile string
	// Concurrency is how many events this process delivers at once.
	Concurrency int
	// Durable is the consumer shared by every replica.
	Durable string
	// AckWait is how long an event held by a replica that died waits before
	// another replica takes it.
	AckWait time.Duration
	// DeadLetterStream is the stream of dead-letter records; their subject
	// is <DeadLetterStream>.<gathering id>.
	DeadLetterStream string
	// DeadLetterMaxAge is how long dead-letter records are kept.
	DeadLetterMaxAge time.Duration
	// DeliveriesBucket is the KV bucket that records which sink has which
	// event; DeliveriesTTL is how long a record is kept, which should be at
	// least as long as the events stream keeps events.
	DeliveriesBucket string
	DeliveriesTTL    time.Duration
	// Replicas of the stream and the bucket.
	Replicas int
	// EventsKey, if set, is the key status events are signed with
	// (eventing.Sign): an event whose signature does not verify is not
	// delivered.
	EventsKey []byte
}

// DefaultConfig returns the defaults documented in the README, which also
// stand in for the zero fields of a Config.
func DefaultConfig() Config {
	return Config{
		Retries:          5,
		Backoff:          time.Second,
		MaxBackoff:       time.Minute,
		Timeout:          10 * time.Second,
		Concurrency:      64,
		Durable:          "notifier-sinks",
		AckWait:          30 * time.Second,
		DeadLetterStream: "MUST_GATHER_DEADLETTER",
		DeadLetterMaxAge: 30 * 24 * time.Hour,
		DeliveriesBucket: "must-gather-deliveries",
		DeliveriesTTL:    72 * time.Hour,
		Replicas:         1,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.Backoff, d.Backoff)
	set(&c.MaxBackoff, d.MaxBackoff)
	set(&c.Timeout, d.Timeout)
	set(&c.AckWait, d.AckWait)
	set(&c.DeadLetterMaxAge, d.DeadLetterMaxAge)
	set(&c.DeliveriesTTL, d.DeliveriesTTL)
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Durable == "" {
		c.Durable = d.Durable
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = d.DeadLetterStream
	}
	if c.DeliveriesBucket == "" {
		c.DeliveriesBucket = d.DeliveriesBucket
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
}

// ErrCAFile is New's error for a Config.CAFile that cannot be read or
// holds no certificate.
var ErrCAFile = errors.New("bad sink CA file")

// ErrNoPresigner is New's error for Config.Presigned without Deps.Presign.
var ErrNoPresigner = errors.New("presigned download URLs asked for, but this process has no presigner")

// Records reads gathering records; mustgather.Store is one.
type Records interface {
	Get(ctx context.Context, id mustgather.ID) (mustgather.Gathering, error)
}

// Deps are what delivery needs from the process.
type Deps struct {
	// JS holds the dead-letter stream and the deliveries bucket.
	JS jetstream.JetStream
	// Bus is the events stream whose status events are delivered.
	Bus *natsbus.Bus
	// Records gives the data of an event: the gathering as the store has it.
	Records Records
	// Presign returns a download URL of a completed gathering that needs no
	// credentials, and when it expires; needed for Config.Presigned.
	Presign func(ctx context.Context, g mustgather.Gathering) (url string, expires time.Time, err error)
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry for the metrics; nil registers none.
	Registry prometheus.Registerer
}

// Notifier delivers final status events to the sinks.
type Notifier struct {
	cfg        Config
	deps       Deps
	log        *slog.Logger
	sinks      []sink
	secret     []byte
	client     cloudevents.Client
	deliveries jetstream.KeyValue
	m          metrics

	// inFlight holds the ids of the events this process is delivering. A
	// copy of one that comes in meanwhile (its ack wait ran out while the
	// first was retrying a sink) waits for another turn rather than race
	// the first to the sinks, before either has recorded its delivery.
	mu       sync.Mutex
	inFlight map[string]bool
}

// errInFlight: the event is being delivered by this process already.
var errInFlight = errors.New("being delivered by this process already; it comes again later")

// begin marks the event id in flight; it reports false if it was already.
func (n *Notifier) begin(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inFlight[id] {
		return false
	}
	n.inFlight[id] = true
	return true
}

func (n *Notifier) end(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.inFlight, id)
}

// New checks cfg, creates or updates the dead-letter stream and the
// deliveries bucket, and returns a Notifier. It refuses Config.Presigned
// without Deps.Presign (ErrNoPresigner) rather than send events without
// the URLs the subscribers were promised.
func New(ctx context.Context, cfg Config, deps Deps) (*Notifier, error) {
	cfg.defaults()
	sinks, err := parseSinks(cfg.Sinks)
	if err != nil {
		return nil, err
	}
	if cfg.Presigned && deps.Presign == nil {
		return nil, ErrNoPresigner
	}
	if cfg.Retries < 0 || cfg.MaxBackoff < cfg.Backoff {
		return nil, fmt.Errorf("sink retries %d must be at least 0 and max backoff %s at least backoff %s", cfg.Retries, cfg.MaxBackoff, cfg.Backoff)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, deps: deps, log: log, sinks: sinks, m: newMetrics(deps.Registry), inFlight: map[string]bool{}}
	if cfg.Secret != "" {
		n.secret = []byte(cfg.Secret)
	}
	if n.client, err = newClient(cfg.CAFile); err != nil {
		return nil, err
	}
	if _, err := deps.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.DeadLetterStream,
		Description: "must-gather-functions events that subscribers did not take",
		Subjects:    []string{cfg.DeadLetterStream + ".>"},
		MaxAge:      cfg.DeadLetterMaxAge,
		Duplicates:  time.Minute,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.DeadLetterStream, err)
	}
	if n.deliveries, err = deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.DeliveriesBucket,
		Description: "must-gather-functions events delivered to subscribers",
		TTL:         cfg.DeliveriesTTL,
		History:     1,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", cfg.DeliveriesBucket, err)
	}
	return n, nil
}

// Run consumes status events and delivers the final ones until ctx ends.
// A consumer created now starts with the events published after it: a new
// deployment does not send its subscribers the history the stream holds.
func (n *Notifier) Run(ctx context.Context) error {
	return n.deps.Bus.Consume(ctx, natsbus.ConsumerConfig{
		Durable:       n.cfg.Durable,
		Filter:        n.deps.Bus.AllStatusSubjects(),
		Concurrency:   n.cfg.Concurrency,
		AckWait:       n.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		Logger:        n.log,
	}, n.Handle)
}

// Handle delivers one status event to every sink if it is final, and
// returns once each sink has it or has its dead letter. It returns an error,
// so that the event comes again, when the record is not final yet, the
// store does not answer, or ctx ended before every sink was done.
func (n *Notifier) Handle(ctx context.Context, e cloudevents.Event) error {
	u, err := eventing.ParseStatus(e)
	if err != nil {
		return err
	}
	if !u.Status.Terminal() {
		return nil
	}
	if n.cfg.EventsKey != nil {
		if err := eventing.Verify(e, n.cfg.EventsKey); err != nil {
			n.log.Warn("final event not delivered: its signature does not verify", "gathering", u.ID, "event", e.ID(), "source", e.Source(), "err", err)
			return nil
		}
	}
	g, err := n.deps.Records.Get(ctx, u.ID)
	switch {
	case errors.Is(err, mustgather.ErrNotFound):
		n.log.Warn("final event of an unknown gathering not delivered", "gathering", u.ID, "event", e.ID())
		return nil
	case err != nil:
		return fmt.Errorf("read gathering %d for event %s: %w", u.ID, e.ID(), err)
	case !g.Status.Terminal():
		// A final status is stored before it is published: this is a
		// store that lags, which the retry outwaits.
		return fmt.Errorf("event %s: gathering %d is still %s in the store", e.ID(), u.ID, g.Status)
	case g.Status != u.Status:
		n.log.Warn("final event contradicts the store; not delivered", "gathering", u.ID, "event", e.ID(), "stored", g.Status)
		return nil
	}
	if !n.begin(e.ID()) {
		return fmt.Errorf("event %s: %w", e.ID(), errInFlight)
	}
	defer n.end(e.ID())
	out, err := n.event(ctx, e, u, g)
	if err != nil {
		return err
	}
	errs := make([]error, len(n.sinks))
	var wg sync.WaitGroup
	for i, s := range n.sinks {
		wg.Go(func() { errs[i] = n.deliver(ctx, out, s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// payload is the data of a delivered event: the gathering as the API
// returns it, and where to download its archive.
type payload struct {
	mustgather.Gathering
	// Reason says why a failed gathering failed, as the store has it; the
	// API's object leaves it out.
	Reason string `json:"reason,omitempty"`
	// Download is the API's path of the archive, which needs a token.
	Download string `json:"download"`
	// DownloadURL and DownloadURLExpiresAt: a URL that needs no token,
	// only with Config.Presigned.
	DownloadURL          string `json:"download-url,omitempty"`
	DownloadURLExpiresAt string `json:"download-url-expires-at,omitempty"`
}

// event returns the event sent to the sinks for the final status event in
// whose gathering is g: the type and id of in, the data of g.
func (n *Notifier) event(ctx context.Context, in cloudevents.Event, u mustgather.Update, g mustgather.Gathering) (cloudevents.Event, error) {
	p := payload{Gathering: g, Download: "/must-gather/" + g.ID.String() + "/data"}
	if g.Status == mustgather.StatusError {
		p.Reason = g.Reason
	}
	if n.cfg.Presigned && g.Status == mustgather.StatusCompleted {
		url, expires, err := n.deps.Presign(ctx, g)
		switch {
		case errors.Is(err, mustgather.ErrNotCompleted):
			// No archive to link to, now or later: the event goes without.
			n.log.Warn("no download link for a completed gathering", "gathering", g.ID, "err", err)
		case err != nil:
			return cloudevents.Event{}, fmt.Errorf("presign the download of gathering %d: %w", g.ID, err)
		default:
			p.DownloadURL, p.DownloadURLExpiresAt = url, expires.UTC().Format(time.RFC3339)
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return cloudevents.Event{}, fmt.Errorf("encode event %s: %w", in.ID(), err)
	}
	out := cloudevents.NewEvent(cloudevents.VersionV1)
	out.SetID(in.ID())
	out.SetType(in.Type())
	out.SetSource(Source)
	out.SetSubject(g.ID.String())
	out.SetTime(u.Time)
	if err := out.SetData(cloudevents.ApplicationJSON, data); err != nil {
		return out, fmt.Errorf("encode event %s: %w", in.ID(), err)
	}
	return out, nil
}

// newClient returns the sdk-go HTTP client that sends to the sinks,
// trusting the system's roots and the CAs of caFile. It follows no
// redirect, so a signed event goes only where it was configured to go.
func newClient(caFile string) (cloudevents.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCAFile, caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hc := http.Client{
		Transport:     recordResponse{next: tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithClient(hc))
	if err != nil {
		return nil, fmt.Errorf("cloudevents http client: %w", err)
	}
	return c, nil
}
