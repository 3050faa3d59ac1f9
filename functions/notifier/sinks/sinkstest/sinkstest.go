// Package sinkstest is a subscriber for tests: a real CloudEvents HTTP
// receiver (sdk-go) on a loopback port, whose answer to each request the
// test chooses, and which keeps what it accepted with the request headers.
package sinkstest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Receiver is a CloudEvents HTTP receiver at URL, stopped when the test
// ends.
type Receiver struct {
	URL string
	// RetryAfter is sent with every 429; set it before the first request.
	RetryAfter string

	answer   func(n int) int
	requests atomic.Int64
	mu       sync.Mutex
	got      []Delivery
}

// Delivery is an accepted request: the event, the request's headers, and
// when it came.
type Delivery struct {
	Event  cloudevents.Event
	Header http.Header
	At     time.Time
}

// New starts a Receiver. answer returns the HTTP status of request n (1,
// 2, ...); nil answers 200 to all.
func New(t testing.TB, answer func(n int) int) *Receiver {
	t.Helper()
	return NewTLS(t, nil, answer)
}

// NewTLS starts a Receiver that serves HTTPS with cfg, or HTTP if cfg is
// nil.
func NewTLS(t testing.TB, cfg *tls.Config, answer func(n int) int) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if cfg != nil {
		scheme, ln = "https", tls.NewListener(ln, cfg)
	}
	r := &Receiver{URL: scheme + "://" + ln.Addr().String() + "/events", answer: answer, RetryAfter: "0"}
	p, err := cehttp.New(cehttp.WithListener(ln), cehttp.WithPath("/events"), cehttp.WithMiddleware(r.middleware))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.StartReceiver(ctx, r.receive); err != nil {
			t.Errorf("receiver: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

type (
	answerKey  struct{}
	requestKey struct{}
)

// middleware numbers each request and hands its answer and headers to
// receive, which the sdk-go client calls with the request's context.
func (r *Receiver) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		code := http.StatusOK
		if n := int(r.requests.Add(1)); r.answer != nil {
			code = r.answer(n)
		}
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", r.RetryAfter)
		}
		ctx := context.WithValue(req.Context(), answerKey{}, code)
		ctx = context.WithValue(ctx, requestKey{}, req.Header.Clone())
		next.ServeHTTP(w, req.WithContext(ctx))
	})
}

func (r *Receiver) receive(ctx context.Context, e cloudevents.Event) protocol.Result {
	code, _ := ctx.Value(answerKey{}).(int)
	if code/100 != 2 {
		return cehttp.NewResult(code, "answer %d", code)
	}
	h, _ := ctx.Value(requestKey{}).(http.Header)
	r.mu.Lock()
	r.got = append(r.got, Delivery{Event: e, Header: h, At: time.Now()})
	r.mu.Unlock()
	return nil
}

// Requests returns how many requests came, accepted or not.
func (r *Receiver) Requests() int { return int(r.requests.Load()) }

// Deliveries returns the accepted requests in the order they came.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// Count returns how many times each event id was accepted.
func (r *Receiver) Count() map[string]int {
	m := map[string]int{}
	for _, d := range r.Deliveries() {
		m[d.Event.ID()]++
	}
	return m
}
