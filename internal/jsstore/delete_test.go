package jsstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestDeleteRemovesOnlyAnEndedRecordAndANameThatStillStandsForIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	end := func(g mustgather.Gathering, status mustgather.Status) mustgather.Gathering {
		return mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 1, Status: status, Time: time.Now()})
	}
	newOne := mustCreate(t, st, gathering("n"))
	running := mustCreate(t, st, gathering("r"))
	if _, err := st.Claim(ctx, running.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	older := end(mustCreate(t, st, gathering("shared")), mustgather.StatusCompleted)
	newer := end(mustCreate(t, st, gathering("shared")), mustgather.StatusError)
	alone := end(mustCreate(t, st, gathering("alone")), mustgather.StatusCompleted)
	stale := end(mustCreate(t, st, gathering("")), mustgather.StatusCompleted)

	tests := []struct {
		name string
		id   mustgather.ID
		rev  uint64
		want error
	}{
		{"a new gathering is not deleted", newOne.ID, 0, mustgather.ErrNotEnded},
		{"an inprogress gathering is not deleted", running.ID, 0, mustgather.ErrNotEnded},
		{"a record read at an older revision is not deleted", stale.ID, stale.Revision - 1, mustgather.ErrStale},
		{"an older gathering with a name a newer one holds is deleted", older.ID, older.Revision, nil},
		{"a gathering whose name stands for it is deleted", alone.ID, 0, nil},
		{"a deleted gathering is not found", alone.ID, 0, mustgather.ErrNotFound},
		{"an id never handed out is not found", 999, 0, mustgather.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.Delete(ctx, tt.id, tt.rev)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Delete(%d, %d) = %v, want %v", tt.id, tt.rev, err, tt.want)
			}
		})
	}
	if g, err := st.GetByName(ctx, "shared"); err != nil || g.ID != newer.ID {
		t.Errorf("shared stands for %d (%v), want %d", g.ID, err, newer.ID)
	}
	if _, err := st.GetByName(ctx, "alone"); !errors.Is(err, mustgather.ErrNotFound) {
		t.Errorf("alone: %v, want not found", err)
	}
	if err := st.Delete(ctx, newer.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetByName(ctx, "shared"); !errors.Is(err, mustgather.ErrNotFound) {
		t.Errorf("shared after its newest gathering is deleted: %v; want not found, not the older one", err)
	}
	// Deleting settles; the ended gathering not deleted stays unsettled.
	open, err := st.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range open {
		if id != newOne.ID && id != running.ID && id != stale.ID {
			t.Errorf("unfinished index holds %d", id)
		}
	}
}
