package jsstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestCancelEndsANewGatheringMarksOneInProgressAndLeavesAnEndedOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	now := time.Now()

	t.Run("a new gathering ends in error, canceled, with the note in its output", func(t *testing.T) {
		g := mustCreate(t, st, gathering("new"))
		got, ended, err := st.Cancel(ctx, g.ID, now, "canceled on request of alice")
		if err != nil || !ended {
			t.Fatalf("Cancel: ended %v, %v; want ended", ended, err)
		}
		stored, _ := st.Get(ctx, g.ID)
		if stored.Status != mustgather.StatusError || stored.Reason != mustgather.ReasonCanceled ||
			stored.ExecOutput != "canceled on request of alice\n" || stored.Seq != 1 || got.Revision != stored.Revision {
			t.Errorf("stored %+v, want error, canceled, the note, seq 1, the revision Cancel returned", stored)
		}
		if _, err := st.Claim(ctx, g.ID, now); !errors.Is(err, mustgather.ErrAlreadyClaimed) {
			t.Errorf("a claim after the cancel: %v, want ErrAlreadyClaimed", err)
		}
	})
	t.Run("one in progress is marked, and its record says so to any reader", func(t *testing.T) {
		g := mustCreate(t, st, gathering("running"))
		if _, err := st.Claim(ctx, g.ID, now); err != nil {
			t.Fatal(err)
		}
		if got := mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusInProgress, ExecOutput: "working"}); got.CancelRequested {
			t.Fatal("a progress update marked the gathering")
		}
		var rev uint64
		for i := range 2 { // asking twice is asking once
			got, ended, err := st.Cancel(ctx, g.ID, now, "canceled")
			if err != nil || ended || !got.CancelRequested || got.Status != mustgather.StatusInProgress {
				t.Fatalf("Cancel: %+v ended %v, %v; want inprogress, marked", got, ended, err)
			}
			if i == 1 && got.Revision != rev {
				t.Errorf("the second cancel wrote the record again: revision %d, was %d", got.Revision, rev)
			}
			rev = got.Revision
		}
		if stored, err := st.Get(ctx, g.ID); err != nil || !stored.CancelRequested {
			t.Fatalf("Get after the cancel: marked %v, %v", stored.CancelRequested, err)
		}
		// The runner's progress and final status still apply, and keep the mark.
		got := mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 2, Status: mustgather.StatusInProgress, ExecOutput: "more"})
		if !got.CancelRequested {
			t.Error("a progress update dropped the mark")
		}
	})
	t.Run("an ended gathering is left as it is", func(t *testing.T) {
		for _, status := range []mustgather.Status{mustgather.StatusCompleted, mustgather.StatusError} {
			g := mustCreate(t, st, gathering(""))
			if _, err := st.Claim(ctx, g.ID, now); err != nil {
				t.Fatal(err)
			}
			done := mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 1, Status: status, ArchiveName: "a.tar.gz", ArchiveSize: 3})
			got, ended, err := st.Cancel(ctx, g.ID, now, "canceled")
			if !errors.Is(err, mustgather.ErrEnded) || ended || got.Status != status {
				t.Errorf("Cancel of a %s gathering: %s, ended %v, %v; want it as it is and ErrEnded", status, got.Status, ended, err)
			}
			if stored, _ := st.Get(ctx, g.ID); stored.Revision != done.Revision {
				t.Errorf("the %s record was written: revision %d, was %d", status, stored.Revision, done.Revision)
			}
		}
	})
	t.Run("an unknown gathering is not found", func(t *testing.T) {
		if _, _, err := st.Cancel(ctx, 999, now, "canceled"); !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("Cancel: %v, want ErrNotFound", err)
		}
	})
}

func TestACancelAndAClaimOrAFinalStatusRacingEndOneWay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	now := time.Now()
	for i := range 40 {
		g := mustCreate(t, st, gathering(""))
		claimFirst := i%2 == 0
		var wg sync.WaitGroup
		var claimErr, cancelErr error
		var ended bool
		wg.Go(func() {
			if _, claimErr = st.Claim(ctx, g.ID, now); claimErr == nil {
				_, claimErr = st.Apply(ctx, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusCompleted, ArchiveName: "a.tar.gz"})
			}
		})
		if !claimFirst {
			_, ended, cancelErr = st.Cancel(ctx, g.ID, now, "canceled")
		}
		wg.Wait()
		if claimFirst {
			_, ended, cancelErr = st.Cancel(ctx, g.ID, now, "canceled")
		}
		stored, _ := st.Get(ctx, g.ID)
		what := fmt.Sprintf("round %d: claim %v, cancel ended %v %v, stored %s %q", i, claimErr, ended, cancelErr, stored.Status, stored.Reason)
		switch {
		case ended:
			// The cancel won: nothing ran, no final status overwrote it.
			if claimErr == nil || stored.Status != mustgather.StatusError || stored.Reason != mustgather.ReasonCanceled {
				t.Fatal(what)
			}
		case errors.Is(cancelErr, mustgather.ErrEnded):
			// The run won: the completed record stands untouched.
			if claimErr != nil || stored.Status != mustgather.StatusCompleted || stored.CancelRequested {
				t.Fatal(what)
			}
		case cancelErr == nil:
			// The cancel marked the run, which then completed.
			if claimErr != nil || stored.Status != mustgather.StatusCompleted || !stored.CancelRequested {
				t.Fatal(what)
			}
		default:
			t.Fatal(what)
		}
	}
}

func TestNoteSetsTheOutputOfANewGatheringOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	g := mustCreate(t, st, gathering(""))
	if err := st.Note(ctx, g.ID, "waiting for a slot: 4 of 4 running\n"); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, g.ID); got.ExecOutput != "waiting for a slot: 4 of 4 running\n" || got.Status != mustgather.StatusNew {
		t.Errorf("after Note: %s %q", got.Status, got.ExecOutput)
	}
	if _, err := st.Claim(ctx, g.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Note(ctx, g.ID, "late"); !errors.Is(err, mustgather.ErrAlreadyClaimed) {
		t.Errorf("Note after the claim: %v, want ErrAlreadyClaimed", err)
	}
}
