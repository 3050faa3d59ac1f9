package testenv

import (
	"context"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/client"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Encoding is how DeliverEvent writes an event into an HTTP request.
type Encoding int

const (
	// Binary puts the attributes in ce- headers and the data in the body,
	// as Knative's brokers deliver by default.
	Binary Encoding = iota
	// Structured puts the whole event in the body as
	// application/cloudevents+json.
	Structured
)

func (e Encoding) String() string {
	if e == Structured {
		return "structured"
	}
	return "binary"
}

// DeliverEvent sends e once to url with sdk-go's HTTP client, as a Knative
// Trigger delivers an event, and returns the HTTP status of the answer. A
// request that gets no answer fails the test.
func DeliverEvent(t testing.TB, url string, e cloudevents.Event, enc Encoding) int {
	t.Helper()
	code, err := SendEvent(url, e, enc)
	if err != nil {
		t.Fatalf("deliver %s to %s: %v", e.ID(), url, err)
	}
	return code
}

// SendEvent is DeliverEvent returning the error of a request that got no
// answer, for use outside the test's goroutine.
func SendEvent(url string, e cloudevents.Event, enc Encoding) (int, error) {
	p, err := cehttp.New(cehttp.WithTarget(url))
	if err != nil {
		return 0, err
	}
	c, err := client.New(p)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if enc == Structured {
		ctx = cloudevents.WithEncodingStructured(ctx)
	} else {
		ctx = cloudevents.WithEncodingBinary(ctx)
	}
	res := c.Send(ctx, e)
	var r *cehttp.Result
	if !cloudevents.ResultAs(res, &r) {
		return 0, res
	}
	return r.StatusCode, nil
}
