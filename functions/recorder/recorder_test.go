package recorder_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// newStore returns a store on a fresh embedded NATS.
func newStore(t *testing.T) *jsstore.Store {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := jsstore.New(context.Background(), js, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func TestTheRecorderAppliesNewEventsAndIgnoresOldOnes(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	reg := prometheus.NewRegistry()
	rec := recorder.New(store, nil, reg)
	g, err := store.Create(ctx, mustgather.NewGathering(mustgather.Request{Timeout: "1m"}, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	steps := []struct {
		name   string
		u      mustgather.Update
		status mustgather.Status
		output string
	}{
		{"the first update applies", mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusInProgress, Time: at}, mustgather.StatusInProgress, ""},
		{"progress applies", mustgather.Update{ID: g.ID, Seq: 3, Status: mustgather.StatusInProgress, Time: at, ExecOutput: "b"}, mustgather.StatusInProgress, "b"},
		{"a late older update is ignored", mustgather.Update{ID: g.ID, Seq: 2, Status: mustgather.StatusInProgress, Time: at, ExecOutput: "a"}, mustgather.StatusInProgress, "b"},
		{"completion applies", mustgather.Update{ID: g.ID, Seq: 4, Status: mustgather.StatusCompleted, Time: at, ExecOutput: "c", ArchiveName: "x.tar.gz", ArchiveSize: 3}, mustgather.StatusCompleted, "c"},
		{"a later failure does not undo completion", mustgather.Update{ID: g.ID, Seq: 5, Status: mustgather.StatusError, Time: at, ExecOutput: "d", Reason: "d"}, mustgather.StatusCompleted, "c"},
		{"an update of an unknown gathering is dropped", mustgather.Update{ID: 999, Seq: 1, Status: mustgather.StatusInProgress, Time: at}, mustgather.StatusCompleted, "c"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e, err := eventing.NewStatus(st.u, eventing.SourceRunner)
			if err != nil {
				t.Fatal(err)
			}
			// Stale and unknown updates are not errors: the message is
			// acknowledged, not redelivered.
			if err := rec.Handle(ctx, e); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if st.u.ID != g.ID {
				if _, err := store.Get(ctx, st.u.ID); !errors.Is(err, mustgather.ErrNotFound) {
					t.Errorf("Get(%d) after its update: %v, want ErrNotFound", st.u.ID, err)
				}
			}
			got, err := store.Get(ctx, g.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != st.status || got.ExecOutput != st.output {
				t.Errorf("record %s %q, want %s %q", got.Status, got.ExecOutput, st.status, st.output)
			}
		})
	}
	bad, _ := eventing.NewRequested(g)
	if err := rec.Handle(ctx, bad); !errors.Is(err, eventing.ErrMalformed) {
		t.Errorf("a requested event: %v, want ErrMalformed", err)
	}
	want := `
# HELP mustgather_recorder_events_total Status events handled, by result: applied, stale (ignored), dropped, or, with a signing key, unsigned or forged (dropped).
# TYPE mustgather_recorder_events_total counter
mustgather_recorder_events_total{result="applied"} 3
mustgather_recorder_events_total{result="dropped"} 2
mustgather_recorder_events_total{result="stale"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mustgather_recorder_events_total"); err != nil {
		t.Error(err)
	}
}
