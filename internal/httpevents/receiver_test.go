package httpevents_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestTwoFunctionsOfOneProcessBothTakeAnEventInTurn(t *testing.T) {
	for _, tt := range []struct {
		name      string
		first     error
		wantCode  int
		wantCalls []string
	}{
		{"the second handles it after the first", nil, http.StatusOK, []string{"first", "second"}},
		{"a failure of the first is the answer, and the second waits for the event to come again", errors.New("store down"), http.StatusServiceUnavailable, []string{"first"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			r := httpevents.NewReceiver(nil, nil)
			r.Handle(func(context.Context, cloudevents.Event) error { calls = append(calls, "first"); return tt.first }, eventing.TypeCompleted)
			r.Also(func(context.Context, cloudevents.Event) error { calls = append(calls, "second"); return nil }, eventing.TypeCompleted)
			srv := httptest.NewServer(r)
			defer srv.Close()
			e, err := eventing.NewStatus(mustgather.Update{ID: 1, Seq: 2, Status: mustgather.StatusCompleted, Time: time.Now()}, eventing.SourceRunner)
			if err != nil {
				t.Fatal(err)
			}
			if code := testenv.DeliverEvent(t, srv.URL, e, testenv.Binary); code != tt.wantCode {
				t.Errorf("answer %d, want %d", code, tt.wantCode)
			}
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("handlers called %v, want %v", calls, tt.wantCalls)
			}
		})
	}
}
