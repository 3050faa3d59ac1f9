package recorder_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

var (
	signingKey = []byte("the recorder's test key, 32+ bytes long")
	otherKey   = []byte("a key the recorder does not know, 32+ bytes")
)

func TestOverHTTPTheRecorderAppliesOnlyStatusEventsSignedWithItsKey(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	reg := prometheus.NewRegistry()
	rcv := httpevents.NewReceiver(nil, reg)
	rcv.Handle(recorder.New(store, nil, reg, recorder.WithSigningKey(signingKey)).Handle, eventing.StatusTypes...)
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)

	g, err := store.Create(ctx, mustgather.NewGathering(mustgather.Request{Timeout: "1m"}, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	status := func(u mustgather.Update, sign func(*cloudevents.Event)) cloudevents.Event {
		u.ID, u.Time = g.ID, at
		e, err := eventing.NewStatus(u, eventing.SourceRunner)
		if err != nil {
			t.Fatal(err)
		}
		if sign != nil {
			sign(&e)
		}
		return e
	}
	signed := func(e *cloudevents.Event) { eventing.Sign(e, signingKey) }
	completed := mustgather.Update{Seq: 3, Status: mustgather.StatusCompleted, ExecOutput: "done", ArchiveName: "x.tar.gz", ArchiveSize: 3}
	steps := []struct {
		name   string
		e      cloudevents.Event
		enc    testenv.Encoding
		status mustgather.Status
		output string
	}{
		{"a signed start in binary mode applies",
			status(mustgather.Update{Seq: 1, Status: mustgather.StatusInProgress}, signed), testenv.Binary, mustgather.StatusInProgress, ""},
		{"signed progress in structured mode applies",
			status(mustgather.Update{Seq: 2, Status: mustgather.StatusInProgress, ExecOutput: "working"}, signed), testenv.Structured, mustgather.StatusInProgress, "working"},
		{"the same progress delivered again changes nothing",
			status(mustgather.Update{Seq: 2, Status: mustgather.StatusInProgress, ExecOutput: "working"}, signed), testenv.Binary, mustgather.StatusInProgress, "working"},
		{"an unsigned completion is not applied",
			status(completed, nil), testenv.Binary, mustgather.StatusInProgress, "working"},
		{"a completion signed with another key is not applied",
			status(completed, func(e *cloudevents.Event) { eventing.Sign(e, otherKey) }), testenv.Structured, mustgather.StatusInProgress, "working"},
		{"a signed completion whose archive was changed afterwards is not applied",
			status(completed, func(e *cloudevents.Event) {
				eventing.Sign(e, signingKey)
				forged := completed
				forged.ID, forged.Time, forged.ArchiveName = g.ID, at, "evil.tar.gz"
				f, _ := eventing.NewStatus(forged, eventing.SourceRunner)
				_ = e.SetData(cloudevents.ApplicationJSON, f.Data())
			}), testenv.Binary, mustgather.StatusInProgress, "working"},
		{"a signature copied onto a failure is not applied",
			status(mustgather.Update{Seq: 3, Status: mustgather.StatusError, ExecOutput: "forged", Reason: "forged"}, func(e *cloudevents.Event) {
				e.SetExtension(eventing.SignatureExtension, status(completed, signed).Extensions()[eventing.SignatureExtension])
			}), testenv.Binary, mustgather.StatusInProgress, "working"},
		{"the signed completion applies",
			status(completed, signed), testenv.Structured, mustgather.StatusCompleted, "done"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			// Every one is answered 200: delivering a forged or repeated
			// event again would change nothing.
			if code := testenv.DeliverEvent(t, srv.URL, st.e, st.enc); code != http.StatusOK {
				t.Fatalf("answer %d, want 200", code)
			}
			got, err := store.Get(ctx, g.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != st.status || got.ExecOutput != st.output {
				t.Errorf("record %s %q, want %s %q", got.Status, got.ExecOutput, st.status, st.output)
			}
			if st.status == mustgather.StatusCompleted && got.ArchiveName != "x.tar.gz" {
				t.Errorf("archive %q, want x.tar.gz", got.ArchiveName)
			}
		})
	}
	t.Run("a body that is no CloudEvent is answered 200 and dropped", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/cloudevents+json", strings.NewReader(`{"specversion": "1.0", "id": `))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("answer %d, want 200", resp.StatusCode)
		}
	})
	want := `
# HELP mustgather_recorder_events_total Status events handled, by result: applied, stale (ignored), dropped, or, with a signing key, unsigned or forged (dropped).
# TYPE mustgather_recorder_events_total counter
mustgather_recorder_events_total{result="applied"} 3
mustgather_recorder_events_total{result="forged"} 3
mustgather_recorder_events_total{result="stale"} 1
mustgather_recorder_events_total{result="unsigned"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mustgather_recorder_events_total"); err != nil {
		t.Error(err)
	}
}
