package runner_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// reattachGatherer stands for a gatherer whose work outlives its runner:
// Reattach finds that work, started at started, when gone is false.
type reattachGatherer struct {
	gone       bool
	notStarted bool // Reattach finds the work not started: Gather starts it
	started    time.Time
	reattached atomic.Int32
	gathered   atomic.Int32
}

func (g *reattachGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	g.gathered.Add(1)
	if g.notStarted {
		return resumed{}.Gather(ctx, job)
	}
	return fmt.Errorf("gathering %d started anew", job.Gathering.ID)
}

func (g *reattachGatherer) Reattach(_ context.Context, mg mustgather.Gathering, runner string) (mustgather.Reattached, error) {
	g.reattached.Add(1)
	if g.gone {
		return mustgather.Reattached{}, fmt.Errorf("its pod is gone: %w", mustgather.ErrGone)
	}
	if g.notStarted {
		return mustgather.Reattached{}, fmt.Errorf("namespace ns holds no pod: %w", mustgather.ErrNotStarted)
	}
	return mustgather.Reattached{Gatherer: resumed{}, Line: "runner " + runner + " re-attached to pod ns/pod after runner dead stopped",
		Started: g.started}, nil
}

// resumed is the rest of a gathering, once re-attached to: it gathers
// until the job is stopped or for a moment.
type resumed struct{}

func (resumed) Gather(ctx context.Context, job mustgather.Job) error {
	_, _ = io.WriteString(job.Log, "after the take-over\n")
	err := job.Archive.AddBytes("pod/out.txt", []byte("gathered\n"), time.Now())
	select {
	case <-job.Stop.Done():
		return fmt.Errorf("gathering stopped: %w", context.Cause(job.Stop))
	case <-time.After(200 * time.Millisecond):
	}
	return err
}

func TestTwoReapersTakeOverAGatheringWhoseRunnerDiedOnce(t *testing.T) {
	const timeout = time.Minute
	for _, tt := range []struct {
		name       string
		gone       bool
		notStarted bool
		// created and started are how long before the take-over the
		// gathering was created and its work started (0: unknown).
		created, started time.Duration
		status           mustgather.Status
		output           []string
	}{
		{"its work is there: it is carried on to completion", false, false, 0, 0, mustgather.StatusCompleted,
			[]string{"before the runner died", "re-attached to pod ns/pod after runner dead stopped", "after the take-over"}},
		{"its work started within its timeout, after a longer wait: it is carried on to completion", false, false, 2 * timeout, timeout / 2, mustgather.StatusCompleted,
			[]string{"after the take-over"}},
		{"its work started longer ago than its timeout: it is stopped at once, timed out", false, false, 3 * timeout, 2 * timeout, mustgather.StatusError,
			[]string{"after the take-over", "timed out after 1m"}},
		{"its work is gone: it fails", true, false, 0, 0, mustgather.StatusError,
			[]string{"before the runner died", "error: the runner stopped before the gathering finished: its pod is gone"}},
		{"its work had not started: it is started and completes", false, true, 0, 0, mustgather.StatusCompleted,
			[]string{"before the runner died", "took the gathering over and starts it: namespace ns holds no pod", "after the take-over"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Hour; c.PendingTimeout = 2 * time.Hour })
			now := time.Now()
			gatherer := &reattachGatherer{gone: tt.gone, notStarted: tt.notStarted}
			if tt.started > 0 {
				gatherer.started = now.Add(-tt.started)
			}
			reaper := func() *runner.Runner {
				return runner.New(e.cfg, runner.Deps{
					Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus,
					ReaperEvents: e.bus.WithSource(eventing.SourceReaper), Gatherer: gatherer,
				})
			}
			// A claimed gathering whose runner reported some output and died:
			// no lease.
			r, err := mustgather.Request{Command: "gather", Timeout: timeout.String()}.Validate(mustgather.Policy{MaxTimeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			g, err := e.store.Create(ctx, mustgather.NewGathering(r, now.Add(-tt.created)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.Claim(ctx, g.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.Apply(ctx, mustgather.Update{ID: g.ID, Seq: 3, Status: mustgather.StatusInProgress,
				Time: time.Now(), ExecOutput: "before the runner died\n"}); err != nil {
				t.Fatal(err)
			}

			var wg sync.WaitGroup
			for _, r := range []*runner.Runner{reaper(), reaper()} {
				wg.Go(func() {
					if err := r.Reap(ctx); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			got := e.waitEnded(t, g.ID)
			if got.Status != tt.status {
				t.Errorf("status %s, want %s:\n%s", got.Status, tt.status, got.ExecOutput)
			}
			for _, want := range tt.output {
				if !strings.Contains(got.ExecOutput, want) {
					t.Errorf("exec-output lacks %q:\n%s", want, got.ExecOutput)
				}
			}
			if n := gatherer.reattached.Load(); n != 1 {
				t.Errorf("re-attached %d times, want once", n)
			}
			if n, want := gatherer.gathered.Load(), map[bool]int32{false: 0, true: 1}[tt.notStarted]; n != want {
				t.Errorf("gathered anew %d times, want %d", n, want)
			}
			if tt.gone {
				return
			}
			files := e.readArchive(t, got)
			if files["pod/out.txt"] != "gathered\n" || !strings.Contains(files["must-gather.logs"], "before the runner died") {
				t.Errorf("archive %v, must-gather.logs:\n%s", keys(files), files["must-gather.logs"])
			}
		})
	}
}

// untilDone gathers until its context ends, and says why it ended.
type untilDone struct {
	started chan struct{}
	cause   chan error
}

func (g untilDone) Gather(ctx context.Context, job mustgather.Job) error {
	close(g.started)
	<-ctx.Done()
	g.cause <- context.Cause(ctx)
	return context.Cause(ctx)
}

func TestARunWhoseLeaseAnotherRunnerTookStopsAndRecordsNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	gatherer := untilDone{started: make(chan struct{}), cause: make(chan error, 1)}
	r := runner.New(e.cfg, runner.Deps{Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus, Gatherer: gatherer})
	g, ev := e.create(t, mustgather.Request{Command: "gather"})
	handled := make(chan error, 1)
	go func() { handled <- r.Handle(ctx, ev) }()
	<-gatherer.started

	// The lease lapses while the run goes on, and another runner's reaper
	// takes it.
	leases, err := e.js.KeyValue(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	if err := leases.Delete(ctx, g.ID.String()); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Hold(ctx, g.ID, "the runner that took over"); err != nil {
		t.Fatal(err)
	}

	if cause := <-gatherer.cause; !errors.Is(cause, runner.ErrTakenOver) {
		t.Errorf("the gatherer stopped for %v, want %v", cause, runner.ErrTakenOver)
	}
	if err := <-handled; err != nil {
		t.Errorf("Handle: %v", err)
	}
	got, err := e.store.Get(ctx, g.ID)
	if err != nil || got.Status != mustgather.StatusInProgress {
		t.Errorf("gathering %s (%v), want still inprogress for the runner that took over", got.Status, err)
	}
	if _, err := e.archives.Open(ctx, mustgather.ArchiveKey(g.ID, mustgather.ArchiveName(g.ID, g.CustomName))); !errors.Is(err, mustgather.ErrNotFound) {
		t.Errorf("archive of the run that was taken over: %v", err)
	}
	if held, err := e.store.Held(ctx, g.ID); err != nil || !held {
		t.Errorf("the lease of the runner that took over: held %v, %v", held, err)
	}
}
