package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sink is one subscriber.
type sink struct {
	url string // as configured
	// shown is the URL without user info and query, for logs and
	// dead-letter records; host is the metrics label.
	shown, host string
	// key names the sink in KV keys and message ids.
	key string
}

// CheckSinks reports what is wrong with a list of sink URLs, naming each
// bad entry by its position and never quoting user info or a query.
func CheckSinks(urls []string) error {
	_, err := parseSinks(urls)
	return err
}

func parseSinks(urls []string) ([]sink, error) {
	var (
		out  []sink
		errs []error
		seen = map[string]bool{}
	)
	for i, raw := range urls {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("entry %d is not a URL", i+1))
			continue
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
			errs = append(errs, fmt.Errorf("entry %d (%s) is not an absolute http or https URL", i+1, shownURL(u)))
			continue
		case seen[raw]:
			errs = append(errs, fmt.Errorf("entry %d (%s) repeats an earlier one", i+1, shownURL(u)))
			continue
		}
		seen[raw] = true
		sum := sha256.Sum256([]byte(raw))
		out = append(out, sink{url: raw, shown: shownURL(u), host: u.Host, key: hex.EncodeToString(sum[:8])})
	}
	return out, errors.Join(errs...)
}

// shownURL is u without user info, query and fragment.
func shownURL(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return v.String()
}

// attemptError is a failed attempt.
type attemptError struct {
	status     int // the sink's HTTP status; 0 for a network error or timeout
	retryable  bool
	retryAfter time.Duration // the sink's Retry-After; 0 if none
	msg        string
}

func (e *attemptError) Error() string { return e.msg }

// deliver sends out to s until it succeeds, is refused, or fails
// Retries+1 times; then it records that s is done with out. It returns an
// error only when it could not finish: ctx ended, or the dead letter could
// not be written.
func (n *Notifier) deliver(ctx context.Context, out cloudevents.Event, s sink) error {
	key := out.ID() + "." + s.key
	if _, err := n.deliveries.Get(ctx, key); err == nil {
		n.m.deliveries.WithLabelValues(s.host, outcomeDuplicate).Inc()
		n.log.Debug("event delivered before; not sent again", "event", out.ID(), "sink", s.shown)
		return nil
	} else if ctx.Err() != nil {
		return fmt.Errorf("deliver %s to %s: %w", out.ID(), s.shown, ctx.Err())
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		// Better twice than never: send it.
		n.log.Warn("cannot read the delivery record; sending anyway", "event", out.ID(), "sink", s.shown, "err", err)
	}
	first := time.Now()
	var last *attemptError
	attempts := 0
	for {
		attempts++
		last = n.attempt(ctx, out, s)
		if last == nil {
			n.m.deliveries.WithLabelValues(s.host, outcomeDelivered).Inc()
			n.m.delay.WithLabelValues(s.host).Observe(time.Since(out.Time()).Seconds())
			n.log.Debug("event delivered", "event", out.ID(), "sink", s.shown, "attempts", attempts)
			n.record(ctx, key, record{Sink: s.shown, Outcome: outcomeDelivered, Attempts: attempts, At: time.Now().UTC()})
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deliver %s to %s: stopped after %d attempts: %w", out.ID(), s.shown, attempts, ctx.Err())
		}
		if !last.retryable || attempts > n.cfg.Retries {
			break
		}
		wait := time.NewTimer(n.backoff(attempts, last.retryAfter))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return fmt.Errorf("deliver %s to %s: stopped after %d attempts: %w", out.ID(), s.shown, attempts, ctx.Err())
		}
	}
	dl := DeadLetter{
		Event: out, Sink: s.shown, Attempts: attempts, LastError: last.msg, LastStatus: last.status,
		FirstAttemptAt: first.UTC(), LastAttemptAt: time.Now().UTC(),
	}
	if err := n.deadLetter(ctx, s, dl); err != nil {
		return err
	}
	n.m.deliveries.WithLabelValues(s.host, outcomeDeadLetter).Inc()
	n.log.Warn("event not delivered; dead-lettered", "event", out.ID(), "sink", s.shown, "attempts", attempts,
		"stream", n.cfg.DeadLetterStream, "err", last.msg)
	n.record(ctx, key, record{Sink: s.shown, Outcome: outcomeDeadLetter, Attempts: attempts, At: time.Now().UTC()})
	return nil
}

// maxErrorText bounds the error text a dead letter keeps.
const maxErrorText = 1024

// attempt sends out to s once, in binary mode, signed when a secret is set.
func (n *Notifier) attempt(ctx context.Context, out cloudevents.Event, s sink) *attemptError {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	// The client writes the CloudEvents headers into this map: one per
	// attempt.
	h := http.Header{}
	if n.secret != nil {
		h.Set(SignatureHeader, Sign(n.secret, out.ID(), out.Data(), time.Now()))
	}
	var resp responseInfo
	ctx = context.WithValue(cehttp.WithCustomHeader(ctx, h), responseKey{}, &resp)
	ctx = binding.WithForceBinary(cloudevents.ContextWithTarget(ctx, s.url))
	start := time.Now()
	res := n.client.Send(ctx, out)
	n.m.latency.WithLabelValues(s.host).Observe(time.Since(start).Seconds())
	if cloudevents.IsACK(res) {
		n.m.attempts.WithLabelValues(s.host, resultOK).Inc()
		return nil
	}
	e := &attemptError{retryable: true, msg: s.redact(res.Error())}
	var hr *cehttp.Result
	if cloudevents.ResultAs(res, &hr) {
		e.status = hr.StatusCode
		e.retryable = hr.StatusCode >= 500 || hr.StatusCode == http.StatusRequestTimeout || hr.StatusCode == http.StatusTooManyRequests
		e.retryAfter = parseRetryAfter(resp.retryAfter, time.Now())
	}
	if len(e.msg) > maxErrorText {
		e.msg = e.msg[:maxErrorText] + "…"
	}
	result := resultRejected
	if e.retryable {
		result = resultRetryable
	}
	n.m.attempts.WithLabelValues(s.host, result).Inc()
	return e
}

// redact replaces the sink's URL, as configured or as net/http quotes it
// (password replaced), with its shown form in an error text.
func (s sink) redact(text string) string {
	text = strings.ReplaceAll(text, s.url, s.shown)
	if u, err := url.Parse(s.url); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
		text = strings.ReplaceAll(text, u.String(), s.shown)
	}
	return text
}

// backoff is the delay after failed attempt n (1, 2, ...): Backoff doubled
// n-1 times, at most MaxBackoff, drawn between half and all of it; or the
// sink's Retry-After, at most MaxBackoff.
func (n *Notifier) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, n.cfg.MaxBackoff)
	}
	d := n.cfg.Backoff
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads a Retry-After value, seconds or an HTTP date; 0 if
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// responseKey is the context key of an attempt's responseInfo.
type responseKey struct{}

// responseInfo is what an attempt learns from the response beyond what
// the sdk-go client returns.
type responseInfo struct{ retryAfter string }

// maxResponseBody bounds how much of a sink's answer is read: the client
// quotes it in its error.
const maxResponseBody = 4 << 10

// recordResponse notes the response's Retry-After in the request's
// responseInfo and bounds its body.
type recordResponse struct{ next http.RoundTripper }

func (r recordResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if info, ok := req.Context().Value(responseKey{}).(*responseInfo); ok {
		info.retryAfter = resp.Header.Get("Retry-After")
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxResponseBody), resp.Body}
	return resp, nil
}

// record is a sink's entry in the deliveries bucket.
type record struct {
	Sink     string    `json:"sink"`
	Outcome  string    `json:"outcome"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// record notes that a sink is done with an event. Failing to is not worth
// a redelivery to every sink: it costs at most one more copy to this one.
func (n *Notifier) record(ctx context.Context, key string, r record) {
	b, _ := json.Marshal(r)
	if _, err := n.deliveries.Put(context.WithoutCancel(ctx), key, b); err != nil {
		n.log.Warn("cannot record a delivery; a redelivered event would be sent again", "key", key, "err", err)
	}
}

// DeadLetter is a dead-letter record: an event a sink did not take, in the
// stream Config.DeadLetterStream under subject <stream>.<gathering id>. It
// never holds the secret nor the signature.
type DeadLetter struct {
	// Event is the event as it was sent (in the record, as structured JSON).
	Event cloudevents.Event `json:"event"`
	// Sink is the sink's URL without user info and query.
	Sink     string `json:"sink"`
	Attempts int    `json:"attempts"`
	// LastError is the last attempt's error; LastStatus its HTTP status, 0
	// for a network error or timeout.
	LastError      string    `json:"last-error"`
	LastStatus     int       `json:"last-status,omitempty"`
	FirstAttemptAt time.Time `json:"first-attempt-at"`
	LastAttemptAt  time.Time `json:"last-attempt-at"`
}

func (n *Notifier) deadLetter(ctx context.Context, s sink, dl DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter of %s: %w", dl.Event.ID(), err)
	}
	msg := nats.NewMsg(n.cfg.DeadLetterStream + "." + dl.Event.Subject())
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set("Sink", s.shown)
	msg.Data = b
	if _, err := n.deps.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(dl.Event.ID()+"."+s.key), jetstream.WithExpectStream(n.cfg.DeadLetterStream)); err != nil {
		return fmt.Errorf("dead-letter %s for %s: %w", dl.Event.ID(), s.shown, err)
	}
	return nil
}
