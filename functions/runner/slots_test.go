package runner_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/process"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// capped is an env with several runners under one cap of MaxRunning, each
// taking requested events from the shared durable consumer as the runner
// processes of a deployment do. Every gathering's command appends "start
// <id>" and "end <id>" to log, and waits between them until gate exists.
type capped struct {
	*env
	slots *jsstore.Slots
	log   string
	gate  string
}

func newCapped(t *testing.T, runners, max int, mutate func(*runner.Config)) *capped {
	t.Helper()
	e := newEnv(t, func(c *runner.Config) {
		c.MaxRunning = max
		if mutate != nil {
			mutate(c)
		}
	})
	slots, err := jsstore.NewSlots(context.Background(), e.js, jsstore.Config{SlotBucket: testenv.Name("slots"), LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &capped{env: e, slots: slots, log: filepath.Join(dir, "log"), gate: filepath.Join(dir, "gate")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, runners)
	for range runners {
		r := runner.New(e.cfg, runner.Deps{
			Store: e.store, Leases: e.store, Slots: slots, Archives: e.archives, Events: e.bus,
			ReaperEvents: e.bus.WithSource(eventing.SourceReaper),
			Gatherer:     &process.Gatherer{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond},
		})
		go func() {
			defer func() { done <- struct{}{} }()
			_ = e.bus.Consume(ctx, natsbus.ConsumerConfig{
				Durable: "runner", Filter: e.bus.RequestedSubject(), Concurrency: 4, AckWait: 3 * time.Second,
			}, r.Handle)
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range runners {
			<-done
		}
	})
	return c
}

// start creates a gathering of the logging command and announces it.
func (c *capped) start(t *testing.T) mustgather.Gathering {
	t.Helper()
	cmd := fmt.Sprintf(`echo "start $MUST_GATHER_ID" >> %[1]s; while [ ! -e %[2]s ]; do sleep 0.02; done; echo "end $MUST_GATHER_ID" >> %[1]s`, c.log, c.gate)
	g, _ := c.create(t, mustgather.Request{Command: cmd, Timeout: "2m"})
	if err := c.bus.Requested(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return g
}

// lines returns the log's lines.
func (c *capped) lines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(c.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), "start ", "start:"))
}

// waitStatus waits until every gathering of ids is in status and its
// exec-output holds out.
func (c *capped) waitStatus(t *testing.T, status mustgather.Status, out string, ids ...mustgather.ID) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("gatherings %v %s with %q", ids, status, out), func() bool {
		for _, id := range ids {
			g, err := c.store.Get(context.Background(), id)
			if err != nil || g.Status != status || !strings.Contains(g.ExecOutput, out) {
				return false
			}
		}
		return true
	})
}

func TestNoMoreThanMaxRunningGatheringsRunAcrossRunners(t *testing.T) {
	c := newCapped(t, 3, 2, nil)
	if err := os.WriteFile(c.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The commands now run straight through: short runs, one after another,
	// on three runners with four local slots each.
	var ids []mustgather.ID
	for range 12 {
		ids = append(ids, c.start(t).ID)
	}
	for _, id := range ids {
		if g := c.waitEnded(t, id); g.Status != mustgather.StatusCompleted {
			t.Fatalf("gathering %d: %s %s\n%s", id, g.Status, g.Reason, g.ExecOutput)
		}
	}
	running, most := 0, 0
	for _, l := range c.lines(t) {
		if strings.HasPrefix(l, "start:") {
			running++
		} else {
			running--
		}
		most = max(most, running)
	}
	if most > 2 {
		t.Errorf("%d gatherings ran at once, the cap is 2:\n%s", most, strings.Join(c.lines(t), "\n"))
	}
	// A runner frees its slot once it has recorded the final status.
	testenv.Eventually(t, 10*time.Second, "every slot free and nothing waiting", func() bool {
		waiting, taken, err := c.slots.Queue(context.Background())
		return err == nil && taken == 0 && len(waiting) == 0
	})
}

func TestGatheringsWaitingForASlotStartInIdOrderAndSaySo(t *testing.T) {
	c := newCapped(t, 3, 1, nil)
	first := c.start(t)
	c.waitStatus(t, mustgather.StatusInProgress, "", first.ID)
	var waiting []mustgather.ID
	for range 6 {
		waiting = append(waiting, c.start(t).ID)
	}
	c.waitStatus(t, mustgather.StatusNew, "waiting for a slot: 1 of 1 running", waiting...)
	if err := os.WriteFile(c.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range waiting {
		if g := c.waitEnded(t, id); g.Status != mustgather.StatusCompleted {
			t.Fatalf("gathering %d: %s %s\n%s", id, g.Status, g.Reason, g.ExecOutput)
		}
	}
	var starts []string
	for _, l := range c.lines(t) {
		if id, ok := strings.CutPrefix(l, "start:"); ok {
			starts = append(starts, id)
		}
	}
	want := []string{first.ID.String()}
	for _, id := range waiting {
		want = append(want, id.String())
	}
	if !slices.Equal(starts, want) {
		t.Errorf("started in the order %v, want %v", starts, want)
	}
}

func TestASlotOfADeadRunnerFreesItselfAndTheReaperLeavesWaitingGatheringsAlone(t *testing.T) {
	c := newCapped(t, 2, 1, nil)
	if err := os.WriteFile(c.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A runner that took the one slot and was killed: nobody renews it.
	if _, err := c.slots.Take(ctx, 1000, "dead-host/1/x", 1); err != nil {
		t.Fatal(err)
	}
	g := c.start(t)
	canceled := c.start(t)
	c.waitStatus(t, mustgather.StatusNew, "waiting for a slot: 1 of 1 running", g.ID, canceled.ID)

	// Long past both the requeue time and the pending timeout, the reaper
	// of a live runner neither requeues nor fails them.
	later := runner.New(c.cfg, runner.Deps{
		Store: c.store, Leases: c.store, Slots: c.slots, Archives: c.archives, Events: c.bus,
		Now: func() time.Time { return time.Now().Add(2 * c.cfg.PendingTimeout) },
	})
	if err := later.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []mustgather.ID{g.ID, canceled.ID} {
		if got, _ := c.store.Get(ctx, id); got.Status != mustgather.StatusNew {
			t.Fatalf("gathering %d after a reap: %s %s", id, got.Status, got.Reason)
		}
	}
	if n := requestedEvents(t, c.env); n != 2 {
		t.Errorf("%d requested events in the stream, want the 2 first ones: the reaper requeued a waiting gathering", n)
	}

	// One of them is canceled while it waits: it ends at once and never runs.
	if _, ended, err := mustgather.Cancel(ctx, c.store, c.bus, canceled.ID, time.Now(), "canceled on request"); err != nil || !ended {
		t.Fatalf("Cancel: ended %v, %v", ended, err)
	}
	// The dead runner's slot lapses after the lease TTL; the other starts.
	if got := c.waitEnded(t, g.ID); got.Status != mustgather.StatusCompleted {
		t.Fatalf("%s %s\n%s", got.Status, got.Reason, got.ExecOutput)
	}
	got, _ := c.store.Get(ctx, canceled.ID)
	if got.Status != mustgather.StatusError || got.Reason != mustgather.ReasonCanceled {
		t.Errorf("the canceled one: %s %q", got.Status, got.Reason)
	}
	if lines := c.lines(t); !slices.Equal(lines, []string{"start:" + g.ID.String(), "end", g.ID.String()}) {
		t.Errorf("commands run: %v, want only gathering %d's", lines, g.ID)
	}
}

// requestedEvents counts the requested events in the stream.
func requestedEvents(t *testing.T, e *env) int {
	t.Helper()
	st, err := e.js.Stream(context.Background(), "MUST_GATHER")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(e.bus.RequestedSubject()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}
