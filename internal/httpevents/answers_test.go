package httpevents_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// TestTheReceiverAnswersAsAKnativeTriggerExpects: 2xx for what is done or
// can never be, 429 and 5xx for what is to come again.
func TestTheReceiverAnswersAsAKnativeTriggerExpects(t *testing.T) {
	e, err := eventing.NewStatus(mustgather.Update{ID: 1, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now()}, eventing.SourceRunner)
	if err != nil {
		t.Fatal(err)
	}
	other := e.Clone()
	other.SetType("com.example.unrelated")
	for _, tt := range []struct {
		name       string
		handler    error
		e          cloudevents.Event
		wantCode   int
		retryAfter string
	}{
		{"a handled event is 200", nil, e, http.StatusOK, ""},
		{"a malformed event is 200: it is dropped", fmt.Errorf("bad data: %w", eventing.ErrMalformed), e, http.StatusOK, ""},
		{"a busy handler is 429 with Retry-After", fmt.Errorf("full: %w", eventing.ErrBusy), e, http.StatusTooManyRequests, "5"},
		{"a failed handler is 503: deliver it again", errors.New("store down"), e, http.StatusServiceUnavailable, ""},
		{"a type no function here takes is 200: it is dropped", nil, other, http.StatusOK, ""},
	} {
		for _, enc := range []testenv.Encoding{testenv.Binary, testenv.Structured} {
			t.Run(tt.name+" ("+enc.String()+")", func(t *testing.T) {
				r := httpevents.NewReceiver(nil, nil)
				r.Handle(func(context.Context, cloudevents.Event) error { return tt.handler }, eventing.StatusTypes...)
				srv := httptest.NewServer(r)
				defer srv.Close()
				if code := testenv.DeliverEvent(t, srv.URL, tt.e, enc); code != tt.wantCode {
					t.Errorf("answer %d, want %d", code, tt.wantCode)
				}
				if tt.retryAfter == "" {
					return
				}
				// The header, seen by a plain client.
				resp, err := http.Post(srv.URL, "application/cloudevents+json", strings.NewReader(
					fmt.Sprintf(`{"specversion":"1.0","id":"x","source":"/s","type":%q,"subject":"1","data":{}}`, eventing.TypeProgress)))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
				}
			})
		}
	}
	t.Run("a body that is not a CloudEvent, or is too large, is 200: it is dropped", func(t *testing.T) {
		r := httpevents.NewReceiver(nil, nil)
		r.Handle(func(context.Context, cloudevents.Event) error { t.Error("handler called"); return nil }, eventing.StatusTypes...)
		srv := httptest.NewServer(r)
		defer srv.Close()
		for _, body := range []struct{ contentType, body string }{
			{"application/json", `{"no": "ce- headers"}`},
			{"application/cloudevents+json", `{"specversion": "1.0"`},
			{"application/cloudevents+json", `{"specversion":"1.0","id":"x","source":"/s","type":"` + eventing.TypeProgress + `","data":"` + strings.Repeat("a", httpevents.MaxEventBytes) + `"}`},
		} {
			resp, err := http.Post(srv.URL, body.contentType, strings.NewReader(body.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s of %d bytes: answer %d, want 200", body.contentType, len(body.body), resp.StatusCode)
			}
		}
	})
}
