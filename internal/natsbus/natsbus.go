// Package natsbus carries the project's CloudEvents over NATS JetStream.
//
// Events are written in the CloudEvents NATS binding, structured mode: the
// message body is the whole event as JSON (Content-Type
// application/cloudevents+json), so any CloudEvents reader, or a plain NATS
// subscriber, can decode it. The event id is also the JetStream message id
// (Nats-Msg-Id), so a retried publish within the stream's duplicate window
// is stored once.
//
// Consumers are durable pull consumers of nats.go's jetstream package,
// read through Consumer.Messages. A message is acknowledged only after its
// handler returns, its ack deadline is extended with InProgress while the
// handler works, a failed handler gets the message again after a back-off,
// and a malformed event is terminated rather than retried.
package natsbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	nats_jetstream "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Config configures the stream that holds the events. A zero field takes
// its value from DefaultConfig.
type Config struct {
	// Stream is the JetStream stream name.
	Stream string
	// SubjectPrefix starts every subject of the stream. Requested events go
	// to <SubjectPrefix>.requested, status events to
	// <SubjectPrefix>.status.<id>.
	SubjectPrefix string
	// MaxAge is how long events are kept.
	MaxAge time.Duration
	// Duplicates is the window in which a repeated message id is dropped.
	Duplicates time.Duration
	// Replicas of the stream.
	Replicas int
	// Storage of the stream; the zero value is file storage.
	Storage jetstream.StorageType
	// Source is the CloudEvents source of the events published through
	// Updated and Requeued.
	Source string
	// SigningKey, if set, signs every event published (eventing.Sign).
	SigningKey []byte
}

// DefaultConfig returns the defaults documented in the README, which also
// stand in for the zero fields of a Config.
func DefaultConfig() Config {
	return Config{
		Stream:        "MUST_GATHER",
		SubjectPrefix: "mustgather",
		MaxAge:        72 * time.Hour,
		Duplicates:    2 * time.Minute,
		Replicas:      1,
		Source:        eventing.SourceRunner,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = d.SubjectPrefix
	}
	if c.MaxAge == 0 {
		c.MaxAge = d.MaxAge
	}
	if c.Duplicates == 0 {
		c.Duplicates = d.Duplicates
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.Source == "" {
		c.Source = d.Source
	}
}

// Bus publishes and consumes events on one stream. It implements
// mustgather.Events.
type Bus struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    Config
}

var _ mustgather.Events = (*Bus)(nil)

// New creates or updates the stream and returns a Bus on it.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Bus, error) {
	cfg.defaults()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "must-gather-functions CloudEvents",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
		Storage:     cfg.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
	}
	return &Bus{js: js, stream: s, cfg: cfg}, nil
}

// WithSource returns a Bus on the same stream whose Updated events carry
// source.
func (b *Bus) WithSource(source string) *Bus {
	c := *b
	c.cfg.Source = source
	return &c
}

// RequestedSubject is the subject of gathering.requested events.
func (b *Bus) RequestedSubject() string { return b.cfg.SubjectPrefix + ".requested" }

// StatusSubject is the subject of the status events of one gathering.
func (b *Bus) StatusSubject(id mustgather.ID) string {
	return b.cfg.SubjectPrefix + ".status." + id.String()
}

// AllStatusSubjects is the wildcard subject of the status events of every
// gathering.
func (b *Bus) AllStatusSubjects() string { return b.cfg.SubjectPrefix + ".status.*" }

// Requested publishes the gathering.requested event of g.
func (b *Bus) Requested(ctx context.Context, g mustgather.Gathering) error {
	e, err := eventing.NewRequested(g)
	if err != nil {
		return err
	}
	return b.Publish(ctx, b.RequestedSubject(), e)
}

// Requeued publishes requeue attempt n of the gathering.requested event of
// g, from the Bus's source. It reports false when the stream already held
// that attempt, within its duplicate window.
func (b *Bus) Requeued(ctx context.Context, g mustgather.Gathering, attempt int) (bool, error) {
	e, err := eventing.NewRequeued(g, attempt, b.cfg.Source, time.Now())
	if err != nil {
		return false, err
	}
	ack, err := b.publish(ctx, b.RequestedSubject(), e)
	if err != nil {
		return false, err
	}
	return !ack.Duplicate, nil
}

// Updated publishes the status event of u.
func (b *Bus) Updated(ctx context.Context, u mustgather.Update) error {
	e, err := eventing.NewStatus(u, b.cfg.Source)
	if err != nil {
		return err
	}
	return b.Publish(ctx, b.StatusSubject(u.ID), e)
}

// Publish writes e to subject in structured mode and waits for the stream
// to store it. The event id is the message id.
func (b *Bus) Publish(ctx context.Context, subject string, e cloudevents.Event) error {
	_, err := b.publish(ctx, subject, e)
	return err
}

// publish is Publish, returning the stream's acknowledgement, which says
// whether the event was a copy the stream dropped.
func (b *Bus) publish(ctx context.Context, subject string, e cloudevents.Event) (*jetstream.PubAck, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("publish %s: %w", e.ID(), err)
	}
	if len(b.cfg.SigningKey) > 0 {
		eventing.Sign(&e, b.cfg.SigningKey)
	}
	msg, err := encode(ctx, subject, e)
	if err != nil {
		return nil, err
	}
	// A server that restarts between storing the event and answering
	// never answers: wait no longer than publishWait, so that the caller
	// tries again, which the stream stores once, by the event id.
	pctx, cancel := context.WithTimeout(ctx, publishWait)
	defer cancel()
	ack, err := b.js.PublishMsg(pctx, msg, jetstream.WithMsgID(e.ID()), jetstream.WithExpectStream(b.cfg.Stream))
	if err != nil {
		return nil, fmt.Errorf("publish %s %s to %s: %w", e.Type(), e.ID(), subject, err)
	}
	return ack, nil
}

// publishWait bounds how long one publish waits for the stream's answer.
const publishWait = 5 * time.Second

// DeadLetterSubject is the subject of the events that could not be
// delivered elsewhere (see DeadLetter).
func (b *Bus) DeadLetterSubject() string { return b.cfg.SubjectPrefix + ".deadletter" }

// DeadLetterReasonHeader is the header of a dead-letter record that says
// why the event was not delivered.
const DeadLetterReasonHeader = "Mgf-Dead-Letter-Reason"

// DeadLetter keeps e, which could not be delivered to where it was going,
// in the stream under DeadLetterSubject, as sent (signature and all), with
// why in the DeadLetterReasonHeader header. The message id is
// "deadletter-" and the event id, so that an event given up on twice
// within the duplicate window is kept once.
func (b *Bus) DeadLetter(ctx context.Context, e cloudevents.Event, why string) error {
	subject := b.DeadLetterSubject()
	msg, err := encode(ctx, subject, e)
	if err != nil {
		return err
	}
	msg.Header.Set(DeadLetterReasonHeader, why)
	pctx, cancel := context.WithTimeout(ctx, publishWait)
	defer cancel()
	if _, err := b.js.PublishMsg(pctx, msg, jetstream.WithMsgID("deadletter-"+e.ID()), jetstream.WithExpectStream(b.cfg.Stream)); err != nil {
		return fmt.Errorf("dead-letter %s %s to %s: %w", e.Type(), e.ID(), subject, err)
	}
	return nil
}

// encode returns e as a NATS message on subject in the CloudEvents NATS
// binding, structured mode.
func encode(ctx context.Context, subject string, e cloudevents.Event) (*nats.Msg, error) {
	var body bytes.Buffer
	ctx = binding.WithForceStructured(ctx)
	if _, err := nats_jetstream.WriteMsg(ctx, binding.ToMessage(&e), &body); err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.ID(), err)
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set("Content-Type", cloudevents.ApplicationCloudEventsJSON)
	msg.Data = body.Bytes()
	return msg, nil
}

// Decode reads a CloudEvent from a NATS message in either mode of the
// binding.
func Decode(ctx context.Context, msg *nats.Msg) (cloudevents.Event, error) {
	e, err := binding.ToEvent(ctx, nats_jetstream.NewMessage(msg))
	if err != nil {
		return cloudevents.Event{}, fmt.Errorf("decode message on %s: %v: %w", msg.Subject, err, eventing.ErrMalformed)
	}
	return *e, nil
}

// Handler handles one event. Returning nil acknowledges it; an error wrapping
// eventing.ErrMalformed terminates it; any other error asks for it again
// after a back-off.
type Handler func(ctx context.Context, e cloudevents.Event) error

// ConsumerConfig configures a durable consumer.
type ConsumerConfig struct {
	// Durable is the consumer name, shared by every replica of a function.
	Durable string
	// Filter is the subject to consume, e.g. Bus.RequestedSubject().
	Filter string
	// Concurrency bounds how many events this process handles at once; it
	// asks for an event only when a handler is free, so it never holds more
	// than this many unacknowledged. Default 1.
	Concurrency int
	// MaxAckPending bounds the unacknowledged events of the consumer across
	// every process that shares it. Keep it well above the sum of their
	// Concurrency: the events a dead process held stay unacknowledged until
	// AckWait, and must not hold up the others. Default 1000.
	MaxAckPending int
	// AckWait is how long a message may go unacknowledged before it is
	// redelivered; the consumer extends it with InProgress while a handler
	// runs, so it only fires when a process dies. Default 30s.
	AckWait time.Duration
	// BackOff is the redelivery delay after a failed handler; default 1s,
	// 5s, 15s, 30s, 60s, then 60s.
	BackOff []time.Duration
	// DeliverPolicy says where a consumer created now starts: the zero
	// value is every event the stream holds, jetstream.DeliverNewPolicy
	// only those published after it exists. It applies when the consumer
	// is created; a consumer that exists goes on where it is.
	DeliverPolicy jetstream.DeliverPolicy
	// Logger for failures; nil discards.
	Logger *slog.Logger
}

// Consume handles the events of a durable consumer until ctx ends, then
// waits for handlers under way to return. At most Concurrency run at once,
// each in its own goroutine with a context that is cancelled when ctx ends.
func (b *Bus) Consume(ctx context.Context, c ConsumerConfig, h Handler) error {
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 1000
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if len(c.BackOff) == 0 {
		c.BackOff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cons, err := b.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       c.Durable,
		FilterSubject: c.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: c.DeliverPolicy,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", c.Durable, err)
	}
	// The iterator asks the server for one event at a time, and only when
	// a handler is free: with a larger batch, or a threshold that asks for
	// more before the events in hand are handled, the events it prefetched
	// would stay unacknowledged until AckWait if the process died, and hold
	// up the processes that share the consumer. The server sends a
	// heartbeat every pullHeartbeat while a request waits; when two are
	// missed, Next takes the request for lost and asks again itself (told
	// to report the missed heartbeats instead, nats.go v1.55 asked no more).
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(1), jetstream.PullThresholdMessages(1),
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(false)}
	slots := make(chan struct{}, c.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	var msgs jetstream.MessagesContext
	defer func() {
		// Before waiting for the handlers: ask for nothing more.
		if msgs != nil {
			handBack(msgs)
		}
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		if msgs == nil {
			msgs, err = cons.Messages(opts...)
		}
		var msg jetstream.Msg
		if err == nil {
			msg, err = next(ctx, msgs)
		}
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				msgs = nil
			}
			log.Warn("receive event", "consumer", c.Durable, "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			handle(ctx, msg, c, h, log)
		})
	}
}

// handBack stops msgs and gives back to the server at once the events it
// still sends this process, which a stopped iterator would drop and the
// server give to another process only after AckWait: the answer to a
// request made before it stopped, and the events the handlers hand back
// (NakWithDelay 0) while the request is still open. It returns once the
// subscription is drained, or after handBackWait; the handlers that hand
// events back later reach a server that no longer sends this process any.
func handBack(msgs jetstream.MessagesContext) {
	msgs.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), handBackWait)
	defer cancel()
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			return
		}
		_ = m.Nak()
	}
}

// handBackWait bounds how long a stopping consumer waits for its
// subscription to drain.
const handBackWait = 5 * time.Second

// Pull requests of a consumer: each waits up to pullExpiry for an event,
// with a heartbeat from the server every pullHeartbeat.
//
// A request is lost when the node that leads the consumer goes away before
// the other nodes know of the request (the leader hands its waiting requests
// on through the consumer's Raft group, and a new leader tells those it
// knows of that it leads now), while this process stays connected to a node
// that remains: no answer and no heartbeat ever come, and with a batch of
// one the consumer would receive nothing more. nats.go watches for the
// heartbeats while Next waits, and after two missed ones asks anew.
const (
	pullExpiry    = 30 * time.Second
	pullHeartbeat = 2 * time.Second
)

// next waits for the iterator's next message until ctx ends. Its first
// turn is short: nats.go skips asking the server for a message while it is
// still sending the previous request, which with a batch of one can leave no
// request outstanding right after a message; a new turn asks again. Later
// turns wait as long as ctx, so that nats.go's watch of the heartbeats,
// which each call of Next starts anew and which takes two heartbeats to
// tell a lost request, can fire.
func next(ctx context.Context, msgs jetstream.MessagesContext) (jetstream.Msg, error) {
	turn, cancel := context.WithTimeout(ctx, firstTurn)
	msg, err := msgs.Next(jetstream.NextContext(turn))
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return msgs.Next(jetstream.NextContext(ctx))
	}
	return msg, err
}

// firstTurn bounds how long a message can wait for a request that nats.go
// skipped; a turn costs no round trip.
const firstTurn = 250 * time.Millisecond

func handle(ctx context.Context, msg jetstream.Msg, c ConsumerConfig, h Handler, log *slog.Logger) {
	meta, _ := msg.Metadata()
	var delivered uint64 = 1
	if meta != nil {
		delivered = meta.NumDelivered
	}
	e, err := Decode(ctx, &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
	if err == nil {
		err = keepAlive(ctx, msg, c.AckWait, func() error { return h(ctx, e) })
	}
	switch {
	case err == nil:
		if aerr := msg.DoubleAck(context.WithoutCancel(ctx)); aerr != nil {
			log.Warn("ack event", "consumer", c.Durable, "event", e.ID(), "err", aerr)
		}
	case errors.Is(err, eventing.ErrMalformed):
		log.Error("drop malformed event", "consumer", c.Durable, "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason(err.Error())
	default:
		i := int(delivered) - 1
		if i >= len(c.BackOff) {
			i = len(c.BackOff) - 1
		}
		delay := c.BackOff[max(i, 0)]
		if ctx.Err() != nil {
			// Shutting down: let another replica take it soon.
			delay = 0
		}
		log.Warn("event handler failed; will retry", "consumer", c.Durable, "event", e.ID(),
			"delivered", delivered, "retry_in", delay, "err", err)
		_ = msg.NakWithDelay(delay)
	}
}

// keepAlive runs f, telling the server every third of ackWait that the
// message is still being worked on.
func keepAlive(ctx context.Context, msg jetstream.Msg, ackWait time.Duration, f func() error) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return f()
}
