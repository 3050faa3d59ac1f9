package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/process"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// env is a runner on real NATS JetStream and a real archive directory,
// with the recorder applying its status events to the store.
type env struct {
	store    *jsstore.Store
	bus      *natsbus.Bus
	js       jetstream.JetStream
	archives *dirstore.Store
	runner   *runner.Runner
	cfg      runner.Config
}

func newEnv(t *testing.T, mutate func(*runner.Config)) *env {
	t.Helper()
	e := newEnvWithoutRecorder(t, mutate)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.bus.Consume(rctx, natsbus.ConsumerConfig{Durable: "recorder", Filter: e.bus.AllStatusSubjects(), Concurrency: 16},
			recorder.New(e.store, nil, nil).Handle)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// newEnvWithoutRecorder is newEnv with no recorder: status events stay in
// the stream, as when the recorder lags far behind.
func newEnvWithoutRecorder(t *testing.T, mutate func(*runner.Config)) *env {
	t.Helper()
	ctx := context.Background()
	nc := testenv.Conn(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := jsstore.New(ctx, js, jsstore.Config{Bucket: "g", LeaseBucket: "l", LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(ctx, js, natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	archives, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := runner.DefaultConfig()
	cfg.ProgressInterval = 50 * time.Millisecond
	cfg.LeaseRenew = time.Second
	cfg.FinishGrace = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	e := &env{store: store, bus: bus, js: js, archives: archives, cfg: cfg}
	e.runner = runner.New(cfg, runner.Deps{
		Store: store, Leases: store, Archives: archives, Events: bus,
		ReaperEvents: bus.WithSource(eventing.SourceReaper),
		Gatherer:     &process.Gatherer{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond},
	})
	return e
}

func (e *env) create(t *testing.T, r mustgather.Request) (mustgather.Gathering, cloudevents.Event) {
	t.Helper()
	r, err := r.Validate(mustgather.Policy{DefaultTimeout: time.Minute, MaxTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.store.Create(context.Background(), mustgather.NewGathering(r, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := eventing.NewRequested(g)
	if err != nil {
		t.Fatal(err)
	}
	return g, ev
}

// waitEnded polls the store until the gathering has ended.
func (e *env) waitEnded(t *testing.T, id mustgather.ID) mustgather.Gathering {
	t.Helper()
	var g mustgather.Gathering
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("gathering %d to end", id), func() bool {
		var err error
		g, err = e.store.Get(context.Background(), id)
		return err == nil && g.Status.Terminal()
	})
	return g
}

// readArchive returns the archive's regular files and their contents.
func (e *env) readArchive(t *testing.T, g mustgather.Gathering) map[string]string {
	t.Helper()
	a, err := e.archives.Open(context.Background(), mustgather.ArchiveKey(g.ID, g.ArchiveName))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Size() != g.ArchiveSize {
		t.Errorf("archive size %d, record says %d", a.Size(), g.ArchiveSize)
	}
	return archivetest.ReadTarGz(t, a)
}

// statusTypes returns the types of the status events of a gathering, in
// stream order.
func (e *env) statusTypes(t *testing.T, id mustgather.ID) []string {
	t.Helper()
	ctx := context.Background()
	c, err := e.js.OrderedConsumer(ctx, "MUST_GATHER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{e.bus.StatusSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := natsbus.Decode(ctx, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err != nil {
				t.Fatal(err)
			}
			typ := strings.TrimPrefix(ev.Type(), eventing.TypePrefix+"gathering.")
			if len(types) == 0 || types[len(types)-1] != typ || typ != "progress" {
				types = append(types, typ)
			}
		}
		if n == 0 {
			return types
		}
	}
}

func TestAGatheringRunsToCompletionAndItsOutputIsArchived(t *testing.T) {
	e := newEnv(t, nil)
	g, ev := e.create(t, mustgather.Request{
		CustomName: "plan:cold",
		Command:    `mkdir -p "$MUST_GATHER_DIR/namespaces/mtv" && echo spec > namespaces/mtv/plan.yaml && echo gathered; echo oops >&2`,
	})
	if err := e.runner.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusCompleted {
		t.Fatalf("status %s, output:\n%s", got.Status, got.ExecOutput)
	}
	if want := mustgather.ArchiveName(g.ID, "plan:cold"); got.ArchiveName != want {
		t.Errorf("archive name %q, want %q", got.ArchiveName, want)
	}
	for _, s := range []string{"gathered\n", "oops\n"} {
		if !strings.Contains(got.ExecOutput, s) {
			t.Errorf("exec-output lacks %q:\n%s", s, got.ExecOutput)
		}
	}
	files := e.readArchive(t, got)
	if files["namespaces/mtv/plan.yaml"] != "spec\n" {
		t.Errorf("archive files: %v", keys(files))
	}
	if !strings.Contains(files["must-gather.logs"], "gathered\n") {
		t.Errorf("must-gather.logs: %q", files["must-gather.logs"])
	}
	if _, ok := files["timestamp"]; !ok {
		t.Errorf("archive lacks timestamp: %v", keys(files))
	}
	types := e.statusTypes(t, g.ID)
	if types[0] != "started" || types[len(types)-1] != "completed" {
		t.Errorf("status events %v, want started ... completed", types)
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func TestARedeliveredOrDuplicatedEventDoesNotRunTwice(t *testing.T) {
	e := newEnv(t, nil)
	count := filepath.Join(t.TempDir(), "count")
	g, ev := e.create(t, mustgather.Request{Command: "echo run >> " + count})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			// A copy that comes while another is between lease and claim
			// asks to be delivered again; nothing else fails.
			if err := e.runner.Handle(context.Background(), ev); err != nil && !errors.Is(err, runner.ErrLeasedElsewhere) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e.waitEnded(t, g.ID)
	// And once more after it ended.
	if err := e.runner.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Errorf("command ran %d times, want 1", n)
	}
}

func TestAGatheringThatFailsOrTimesOutEndsInErrorWithWhatItGathered(t *testing.T) {
	tests := []struct {
		name    string
		command string
		timeout string
		reason  string
	}{
		{"a command that exits non-zero", `echo partial > part.txt; echo before; exit 3`, "1m", "command exited with status 3"},
		{"a command that outlives its timeout", `echo partial > part.txt; echo before; sleep 60`, "1s", "timed out after 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			g, ev := e.create(t, mustgather.Request{Command: tt.command, Timeout: tt.timeout})
			if err := e.runner.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			got := e.waitEnded(t, g.ID)
			if got.Status != mustgather.StatusError {
				t.Fatalf("status %s, want error", got.Status)
			}
			if !strings.Contains(got.ExecOutput, "before\n") || !strings.Contains(got.ExecOutput, "error: "+tt.reason) {
				t.Errorf("exec-output lacks output or reason %q:\n%s", tt.reason, got.ExecOutput)
			}
			files := e.readArchive(t, got)
			if files["part.txt"] != "partial\n" {
				t.Errorf("partial output not archived: %v", keys(files))
			}
		})
	}
}

func TestTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	e := newEnv(t, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	g, ev := e.create(t, mustgather.Request{Command: fmt.Sprintf(`sleep 300 & echo $! > %s; wait`, pidFile), Timeout: "1s"})
	if err := e.runner.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	e.waitEnded(t, g.ID)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("child %d of the gathering to end", pid), func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}

func TestShutdownEndsARunningGatheringInErrorAndArchivesIt(t *testing.T) {
	// The grace is what the gatherer has, after the shutdown, to stop the
	// command and archive its folder: ample, so that a loaded machine does
	// not run it out (the test ends when the gathering does, not after it).
	e := newEnv(t, func(c *runner.Config) { c.FinishGrace = time.Minute })
	g, ev := e.create(t, mustgather.Request{Command: `echo partial > part.txt; echo started; sleep 60`, Timeout: "10m"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.runner.Handle(ctx, ev) }()
	testenv.Eventually(t, 20*time.Second, "the gathering to start", func() bool {
		cur, _ := e.store.Get(context.Background(), g.ID)
		return strings.Contains(cur.ExecOutput, "started")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || !strings.Contains(got.ExecOutput, mustgather.ErrShutdown.Error()) {
		t.Errorf("status %s, output:\n%s", got.Status, got.ExecOutput)
	}
	if files := e.readArchive(t, got); files["part.txt"] != "partial\n" {
		t.Errorf("partial output not archived: %v", keys(files))
	}
}

func TestTheDefaultCommandFailsClearlyWhenAbsent(t *testing.T) {
	if _, err := os.Stat(process.DefaultCommand); err == nil {
		t.Skip(process.DefaultCommand + " exists on this machine")
	}
	e := newEnv(t, nil)
	g, ev := e.create(t, mustgather.Request{})
	if err := e.runner.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || !strings.Contains(got.ExecOutput, "/usr/bin/gather is not on this machine") {
		t.Errorf("status %s, output:\n%s", got.Status, got.ExecOutput)
	}
}

func TestTheReaperFinishesGatheringsWhoseRunnerIsGone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Hour; c.PendingTimeout = 2 * time.Hour })
	// A claimed gathering whose runner died: no lease.
	orphan, _ := e.create(t, mustgather.Request{Command: "true"})
	if _, err := e.store.Claim(ctx, orphan.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A claimed gathering whose runner lives: lease held.
	alive, _ := e.create(t, mustgather.Request{Command: "true"})
	if err := e.store.Hold(ctx, alive.ID, "a-live-runner"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Claim(ctx, alive.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A fresh gathering waiting for a runner.
	fresh, _ := e.create(t, mustgather.Request{Command: "true"})

	if err := e.runner.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, orphan.ID)
	if got.Status != mustgather.StatusError || !strings.Contains(got.ExecOutput, "the runner stopped before the gathering finished") {
		t.Errorf("orphan: %s %q", got.Status, got.ExecOutput)
	}
	for _, id := range []mustgather.ID{alive.ID, fresh.ID} {
		g, err := e.store.Get(ctx, id)
		if err != nil || g.Status.Terminal() {
			t.Errorf("gathering %d ended by the reaper: %s %v", id, g.Status, err)
		}
	}
}

func TestTheReaperRequeuesAndThenFailsGatheringsNoRunnerTook(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Minute; c.PendingTimeout = time.Hour })
	stale := mustgather.NewGathering(mustgather.Request{Command: "true", Timeout: "1m"}, now.Add(-2*time.Minute))
	stale, err := e.store.Create(ctx, stale)
	if err != nil {
		t.Fatal(err)
	}
	ancient := mustgather.NewGathering(mustgather.Request{Command: "true", Timeout: "1m"}, now.Add(-2*time.Hour))
	ancient, err = e.store.Create(ctx, ancient)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.waitEnded(t, ancient.ID); got.Status != mustgather.StatusError {
		t.Errorf("ancient gathering: %s", got.Status)
	}
	s, err := e.js.Stream(ctx, "MUST_GATHER")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, e.bus.RequestedSubject())
	if err != nil {
		t.Fatalf("no requested event republished: %v", err)
	}
	ev, err := natsbus.Decode(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stale.ID.String(), ev.Subject()); diff != "" {
		t.Errorf("republished event subject (-want +got):\n%s", diff)
	}
}

func TestARequestedEventLostBeforeAnyRunnerSawItRunsAfterRequeueAfter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	const requeueAfter = time.Second
	e := newEnv(t, func(c *runner.Config) {
		c.RequeueAfter = requeueAfter
		c.ReapInterval = 100 * time.Millisecond
		c.PendingTimeout = time.Hour
	})
	runs := filepath.Join(t.TempDir(), "runs")
	g, ev := e.create(t, mustgather.Request{Command: "echo ran >> " + runs})
	// The API published the event, and it was lost before any runner saw
	// it; its id stays in the stream's duplicate window.
	if err := e.bus.Publish(ctx, e.bus.RequestedSubject(), ev); err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(ctx, "MUST_GATHER")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := s.GetLastMsgForSubject(ctx, e.bus.RequestedSubject())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, lost.Sequence); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		_ = e.bus.Consume(ctx, natsbus.ConsumerConfig{Durable: "runner", Filter: e.bus.RequestedSubject(), Concurrency: 4}, e.runner.Handle)
	})
	wg.Go(func() { e.runner.RunReaper(ctx) })

	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusCompleted {
		t.Fatalf("status %s, output:\n%s", got.Status, got.ExecOutput)
	}
	if waited := time.Since(g.CreatedAt.Time); waited < requeueAfter {
		t.Errorf("ran %s after it was created, before the requeue was due", waited)
	}
	out, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "ran\n" {
		t.Errorf("the command ran %d times, want once", strings.Count(string(out), "ran"))
	}
}

func TestEachRequeueIsANewEventThatTwoReapersSendOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnvWithoutRecorder(t, func(c *runner.Config) { c.RequeueAfter = time.Minute; c.PendingTimeout = time.Hour })
	g := mustgather.NewGathering(mustgather.Request{Command: "true", Timeout: "1m"}, time.Now().Add(-90*time.Second))
	g, err := e.store.Create(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	reaper := func(later time.Duration) *runner.Runner {
		return runner.New(e.cfg, runner.Deps{
			Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus,
			ReaperEvents: e.bus.WithSource(eventing.SourceReaper),
			Now:          func() time.Time { return time.Now().Add(later) },
		})
	}
	// Reapers in two processes look at the gathering at once, then one
	// looks again a RequeueAfter later.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := reaper(0).Reap(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := reaper(time.Minute).Reap(ctx); err != nil {
		t.Fatal(err)
	}

	c, err := e.js.OrderedConsumer(ctx, "MUST_GATHER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{e.bus.RequestedSubject()}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct{ ID, Source, Subject string }
	var got []sent
	for m := range batch.Messages() {
		ev, err := natsbus.Decode(ctx, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != ev.ID() {
			t.Errorf("message id %q, event id %q", id, ev.ID())
		}
		if _, err := eventing.ParseRequested(ev); err != nil {
			t.Errorf("requeued event: %v", err)
		}
		got = append(got, sent{ev.ID(), ev.Source(), ev.Subject()})
	}
	want := []sent{
		{fmt.Sprintf("gathering-%d-requested-1", g.ID), eventing.SourceReaper, g.ID.String()},
		{fmt.Sprintf("gathering-%d-requested-2", g.ID), eventing.SourceReaper, g.ID.String()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requested events in the stream (-want +got):\n%s", diff)
	}
}

// stuckGatherer stands for a copy stream that never ends: it ignores Stop
// and returns only when its context ends.
type stuckGatherer struct{}

func (stuckGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	fmt.Fprintln(job.Log, "copying forever")
	<-ctx.Done()
	return context.Cause(ctx)
}

func TestAGathererThatNeverReturnsEndsInErrorAfterTheCopyTimeout(t *testing.T) {
	e := newEnv(t, func(c *runner.Config) { c.CopyTimeout = time.Second })
	stuck := runner.New(e.cfg, runner.Deps{
		Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus, Gatherer: stuckGatherer{},
	})
	g, ev := e.create(t, mustgather.Request{Command: "x", Timeout: "1s"})
	if err := stuck.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || !strings.Contains(got.ExecOutput, "did not end within 1s after the timeout") {
		t.Errorf("%s\n%s", got.Status, got.ExecOutput)
	}
	if held, err := e.store.Held(context.Background(), g.ID); err != nil || held {
		t.Errorf("lease still held: %v %v", held, err)
	}
}

func TestTheReaperNeverFailsAGatheringItsRunnerFinishedHoweverFarTheRecorderLags(t *testing.T) {
	ctx := context.Background()
	// No recorder at all: none of the runner's status events is applied.
	e := newEnvWithoutRecorder(t, nil)
	g, ev := e.create(t, mustgather.Request{Command: "echo gathered > out.txt"})
	if err := e.runner.Handle(ctx, ev); err != nil {
		t.Fatal(err)
	}
	// The lease is released: a reaper pass now sees no lease.
	if held, err := e.store.Held(ctx, g.ID); err != nil || held {
		t.Fatalf("lease after the gathering ended: %v %v", held, err)
	}
	if err := e.runner.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Get(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != mustgather.StatusCompleted {
		t.Fatalf("status %s after a reaper pass, want completed:\n%s", got.Status, got.ExecOutput)
	}
	if files := e.readArchive(t, got); files["out.txt"] != "gathered\n" {
		t.Errorf("archive files: %v", keys(files))
	}
	if diff := cmp.Diff([]string{"completed"}, finalTypes(t, e, g.ID)); diff != "" {
		t.Errorf("final status events (-want +got):\n%s", diff)
	}
	if ids, err := e.store.Unfinished(ctx); err != nil || len(ids) != 0 {
		t.Errorf("unsettled after the end was announced: %v %v", ids, err)
	}
}

// finalTypes returns the types of the final status events of a gathering,
// in stream order.
func finalTypes(t *testing.T, e *env, id mustgather.ID) []string {
	t.Helper()
	var finals []string
	for _, typ := range e.statusTypes(t, id) {
		if typ == "completed" || typ == "failed" {
			finals = append(finals, typ)
		}
	}
	return finals
}

// lapsingLeases takes a lease and then stops renewing it, as a runner cut
// off from NATS would.
type lapsingLeases struct {
	mustgather.Leases
	taken atomic.Bool
}

func (l *lapsingLeases) Hold(ctx context.Context, id mustgather.ID, holder string) error {
	if l.taken.Swap(true) {
		return nil
	}
	return l.Leases.Hold(ctx, id, holder)
}

// gateGatherer writes a file and then waits for open to be closed.
type gateGatherer struct {
	started chan struct{}
	open    chan struct{}
}

func (g gateGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	close(g.started)
	<-g.open
	return job.Archive.AddBytes("late.txt", []byte("late\n"), time.Now())
}

func TestARunWhoseLeaseLapsedCannotOverwriteTheReapersFailureNorLeaveItsArchive(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	gate := gateGatherer{started: make(chan struct{}), open: make(chan struct{})}
	stalled := runner.New(e.cfg, runner.Deps{
		Store: e.store, Leases: &lapsingLeases{Leases: e.store}, Archives: e.archives, Events: e.bus, Gatherer: gate,
	})
	g, ev := e.create(t, mustgather.Request{Command: "x"})
	done := make(chan error, 1)
	go func() { done <- stalled.Handle(ctx, ev) }()
	<-gate.started
	testenv.Eventually(t, 10*time.Second, "the lease to lapse", func() bool {
		held, err := e.store.Held(ctx, g.ID)
		return err == nil && !held
	})
	if err := e.runner.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	failed := e.waitEnded(t, g.ID)
	if failed.Status != mustgather.StatusError {
		t.Fatalf("status after the reaper: %s", failed.Status)
	}
	close(gate.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Get(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != mustgather.StatusError || got.ArchiveName != "" || !strings.Contains(got.ExecOutput, "the runner stopped before the gathering finished") {
		t.Errorf("after the stalled run ended: %s, archive %q:\n%s", got.Status, got.ArchiveName, got.ExecOutput)
	}
	key := mustgather.ArchiveKey(g.ID, mustgather.ArchiveName(g.ID, g.CustomName))
	if _, err := e.archives.Open(ctx, key); !errors.Is(err, mustgather.ErrNotFound) {
		t.Errorf("the stalled run's archive is still stored: %v", err)
	}
	if diff := cmp.Diff([]string{"failed"}, finalTypes(t, e, g.ID)); diff != "" {
		t.Errorf("final status events (-want +got):\n%s", diff)
	}
}

func TestARedeliveredEventLeavesTheLeaseOfAnotherRunAlone(t *testing.T) {
	ctx := context.Background()
	leaseRevision := func(t *testing.T, e *env, id mustgather.ID) uint64 {
		t.Helper()
		kv, err := e.js.KeyValue(ctx, "l")
		if err != nil {
			t.Fatal(err)
		}
		entry, err := kv.Get(ctx, id.String())
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return entry.Revision()
	}
	t.Run("a lease the dead run still holds is not renewed", func(t *testing.T) {
		e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Hour })
		g, ev := e.create(t, mustgather.Request{Command: "true"})
		if err := e.store.Hold(ctx, g.ID, "a-dead-run"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Claim(ctx, g.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		before := leaseRevision(t, e, g.ID)
		if err := e.runner.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if after := leaseRevision(t, e, g.ID); after != before {
			t.Errorf("lease revision %d after the redelivery, was %d: it was renewed, so the dead run's gathering fails later", after, before)
		}
	})
	t.Run("a lease taken for a gathering already claimed is released at once", func(t *testing.T) {
		e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Hour })
		g, ev := e.create(t, mustgather.Request{Command: "true"})
		if _, err := e.store.Claim(ctx, g.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.runner.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if held, err := e.store.Held(ctx, g.ID); err != nil || held {
			t.Errorf("lease held after the redelivery found the gathering claimed: %v %v", held, err)
		}
	})
	t.Run("a gathering still new under another run's lease is asked for again", func(t *testing.T) {
		e := newEnv(t, func(c *runner.Config) { c.RequeueAfter = time.Hour })
		g, ev := e.create(t, mustgather.Request{Command: "true"})
		if err := e.store.Hold(ctx, g.ID, "a-run-that-died-before-its-claim"); err != nil {
			t.Fatal(err)
		}
		if err := e.runner.Handle(ctx, ev); !errors.Is(err, runner.ErrLeasedElsewhere) {
			t.Errorf("Handle of a gathering that nobody runs: %v, want ErrLeasedElsewhere", err)
		}
		if cur, _ := e.store.Get(ctx, g.ID); cur.Status != mustgather.StatusNew {
			t.Errorf("status %s, want new", cur.Status)
		}
	})
}

func TestTheReaperAnnouncesAnEndWhosePublisherDied(t *testing.T) {
	ctx := context.Background()
	e := newEnvWithoutRecorder(t, nil)
	g, _ := e.create(t, mustgather.Request{Command: "true"})
	if _, err := e.store.Claim(ctx, g.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Recorded, then the process died before publishing and settling.
	end := mustgather.Update{ID: g.ID, Seq: 2, Status: mustgather.StatusCompleted, Time: time.Now(), ArchiveName: "a.tar.gz", ArchiveSize: 10}
	if _, err := e.store.Apply(ctx, end); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.runner.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"completed"}, e.statusTypes(t, g.ID)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
	if ids, err := e.store.Unfinished(ctx); err != nil || len(ids) != 0 {
		t.Errorf("unsettled after the reaper announced it: %v %v", ids, err)
	}
}
