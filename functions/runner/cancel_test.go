package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestACanceledGatheringStopsKeepsWhatItGatheredAndEndsCanceled(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	g, ev := e.create(t, mustgather.Request{Command: `echo partial > part.txt; echo started; sleep 60; echo never > never.txt`, Timeout: "5m"})
	handled := make(chan error, 1)
	go func() { handled <- e.runner.Handle(ctx, ev) }()
	testenv.Eventually(t, 20*time.Second, "the command to start", func() bool {
		got, err := e.store.Get(ctx, g.ID)
		return err == nil && got.Status == mustgather.StatusInProgress && strings.Contains(got.ExecOutput, "started")
	})
	asked := time.Now()
	if _, ended, err := mustgather.Cancel(ctx, e.store, e.bus, g.ID, time.Now(), "canceled on request"); err != nil || ended {
		t.Fatalf("Cancel: ended %v, %v; want it marked for its runner", ended, err)
	}
	select {
	case err := <-handled:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the runner did not stop the gathering")
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || got.Reason != mustgather.ReasonCanceled {
		t.Fatalf("ended %s with reason %q, want error, canceled\n%s", got.Status, got.Reason, got.ExecOutput)
	}
	if !strings.HasSuffix(got.ExecOutput, "canceled: the gathering was stopped on request; what it had gathered is archived\n") {
		t.Errorf("exec-output does not end saying it was canceled:\n%s", got.ExecOutput)
	}
	files := e.readArchive(t, got)
	if files["part.txt"] != "partial\n" {
		t.Errorf("archive lacks what was gathered: %v", keys(files))
	}
	if _, ok := files["never.txt"]; ok {
		t.Error("the command went on after the cancel")
	}
	t.Logf("from the cancel to the recorded end: %s", got.UpdatedAt.Sub(asked).Round(time.Millisecond))
	if types := e.statusTypes(t, g.ID); types[len(types)-1] != "failed" {
		t.Errorf("status events %v, want ... failed", types)
	}
	if got, _ := e.store.Get(ctx, g.ID); got.Reason != mustgather.ReasonCanceled {
		t.Errorf("the recorder's copy: reason %q", got.Reason)
	}
}

func TestTheReaperEndsACanceledGatheringWhoseRunnerDiedAsCanceled(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	g, _ := e.create(t, mustgather.Request{Command: "true"})
	if _, err := e.store.Claim(ctx, g.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The cancel was asked for, and the runner died before it saw it: no
	// lease.
	if _, _, err := e.store.Cancel(ctx, g.ID, time.Now(), "canceled"); err != nil {
		t.Fatal(err)
	}
	if err := e.runner.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || got.Reason != mustgather.ReasonCanceled || !strings.Contains(got.ExecOutput, "canceled: the runner stopped") {
		t.Errorf("%s %q\n%s", got.Status, got.Reason, got.ExecOutput)
	}
}
