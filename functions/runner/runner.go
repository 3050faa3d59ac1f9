// Package runner is the function that runs gatherings. It takes
// gathering.requested events, claims each gathering exactly once, runs a
// Gatherer under the gathering's timeout, streams the result as tar.gz into
// the archive store, and reports every state change as a status event. A
// reaper finishes gatherings whose runner died.
//
// A final status is decided in the store before it is announced: the
// runner and the reaper each write it to the gathering's record by
// compare-and-set, and only the one whose write wins publishes its event.
// The runner holds its lease until its final status is in the record, so
// the reaper never fails a gathering whose runner finished it, and a
// finished gathering is never contradicted by a later final status.
package runner

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// ErrLeasedElsewhere is returned by Handle for a gathering that is still new
// while another run holds its lease: that run is about to claim it, or died
// before it could. The event is to be delivered again, after that lease has
// lapsed if need be.
var ErrLeasedElsewhere = errors.New("another run holds the lease of a gathering that is still new")

// Config holds the runner's settings.
type Config struct {
	// DefaultTimeout applies to a gathering without a valid timeout.
	DefaultTimeout time.Duration
	// ProgressInterval is the least time between two progress events.
	ProgressInterval time.Duration
	// OutputTail is how many bytes of the latest output exec-output holds.
	OutputTail int
	// LogLimit caps must-gather.logs in the archive, in bytes.
	LogLimit int
	// LeaseRenew is how often a running gathering's lease is renewed; it
	// must be well below the lease TTL.
	LeaseRenew time.Duration
	// FinishGrace is how long, after the runner is told to shut down, a
	// gatherer and upload may go on to archive what was gathered.
	FinishGrace time.Duration
	// CopyTimeout bounds, beyond the gathering's timeout, everything after
	// the gather: copying, archiving, uploading and cleaning up. It is the
	// hard end of a gathering, so that no stuck stream keeps it in progress.
	CopyTimeout time.Duration
	// RequeueAfter: a gathering still new this long after it was created
	// gets a new requested event, and another each RequeueAfter after that.
	RequeueAfter time.Duration
	// PendingTimeout: a gathering still new this long after it was created
	// fails.
	PendingTimeout time.Duration
	// ReapInterval is how often the reaper looks at unfinished gatherings.
	ReapInterval time.Duration
	// MaxArchiveBytes caps the size of an archive, compressed, as it goes
	// into the archive store; 0 means no cap. A gathering whose archive
	// grows past it stops, ends in error, and keeps no archive.
	MaxArchiveBytes uint64
	// Retention is how long an ended gathering, with its archive, is kept
	// after its last update; 0 keeps it for ever.
	Retention time.Duration
	// RetentionInterval is how often the runner deletes the gatherings
	// that have outlived Retention.
	RetentionInterval time.Duration
	// Redact configures the redaction of the gatherings that ask for it.
	Redact redact.Config
	// MaxRunning caps the gatherings that run at once across every runner
	// that shares Deps.Slots; 0 (or no Slots) means no cap.
	MaxRunning int
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		DefaultTimeout:    mustgather.DefaultTimeout,
		ProgressInterval:  time.Second,
		OutputTail:        64 << 10,
		LogLimit:          32 << 20,
		LeaseRenew:        10 * time.Second,
		FinishGrace:       60 * time.Second,
		CopyTimeout:       10 * time.Minute,
		RequeueAfter:      30 * time.Second,
		PendingTimeout:    30 * time.Minute,
		ReapInterval:      15 * time.Second,
		MaxArchiveBytes:   10 << 30,
		Retention:         7 * 24 * time.Hour,
		RetentionInterval: time.Hour,
		Redact:            redact.DefaultConfig(),
		MaxRunning:        4,
	}
}

// Deps are what the runner works with.
type Deps struct {
	Logger *slog.Logger
	Store  mustgather.Store
	Leases mustgather.Leases
	// Slots holds the run slots under Config.MaxRunning; nil means no cap.
	Slots    mustgather.Slots
	Archives mustgather.ArchiveStore
	// Events publishes the runner's status events.
	Events mustgather.Events
	// ReaperEvents publishes the reaper's events; nil uses Events.
	ReaperEvents mustgather.Events
	Gatherer     mustgather.Gatherer
	Now          func() time.Time
	Registry     prometheus.Registerer
}

// Runner is the runner function.
type Runner struct {
	cfg      Config
	d        Deps
	m        metrics
	redactor *redact.Redactor
	// takeovers are the runs of gatherings the reaper took over.
	takeovers sync.WaitGroup
}

// New returns a Runner.
func New(cfg Config, d Deps) *Runner {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ReaperEvents == nil {
		d.ReaperEvents = d.Events
	}
	rd, err := redact.New(cfg.Redact)
	if err != nil {
		// The command checks the rules before it starts a runner.
		d.Logger.Error("redaction rules left out; only the built-in rules apply", "err", err)
		rd, _ = redact.New(redact.Config{BufferBytes: cfg.Redact.BufferBytes})
	}
	return &Runner{cfg: cfg, d: d, m: newMetrics(d.Registry), redactor: rd}
}

// Handle takes one gathering.requested event and runs its gathering. It
// returns nil once the gathering has ended and its final status is
// recorded, or when the event is not to be acted on (see admit and claim);
// an error asks for the event again.
func (r *Runner) Handle(ctx context.Context, e cloudevents.Event) error {
	g, log, err := r.admit(ctx, e)
	if g == nil {
		return err
	}
	holder := newHolder()
	if ok, err := r.waitForSlot(ctx, *g, holder, log); !ok {
		return err
	}
	c, err := r.claim(ctx, *g, holder, log)
	if c == nil {
		r.freeSlot(ctx, g.ID, holder, log)
		return err
	}
	r.run(ctx, c.g, c.holder, c.log)
	return nil
}

// admit returns the stored gathering a requested event asks to run, or nil
// when there is nothing to run. It acts on the stored record alone: the
// event only names the gathering, and one that names no record, or whose
// data disagrees with the record (forged or garbled), is dropped, as is
// one whose gathering is no longer new (a redelivery). An error asks for
// the event again.
func (r *Runner) admit(ctx context.Context, e cloudevents.Event) (*mustgather.Gathering, *slog.Logger, error) {
	req, err := eventing.ParseRequested(e)
	if err != nil {
		return nil, nil, err
	}
	log := r.d.Logger.With("gathering", req.ID)
	stored, err := r.d.Store.Get(ctx, req.ID)
	switch {
	case errors.Is(err, mustgather.ErrNotFound):
		log.Warn("requested event dropped: no such gathering", "event", e.ID(), "source", e.Source())
		r.m.dropped.WithLabelValues("unknown").Inc()
		return nil, log, nil
	case err != nil:
		return nil, log, err
	case !stored.SameRequest(req):
		log.Warn("requested event dropped: its data disagrees with the stored gathering", "event", e.ID(), "source", e.Source())
		r.m.dropped.WithLabelValues("mismatch").Inc()
		return nil, log, nil
	case stored.Status != mustgather.StatusNew:
		log.Info("gathering not run again", "status", stored.Status, "event", e.ID())
		return nil, log, nil
	}
	return &stored, log, nil
}

// claimed is a gathering this run has claimed and holds the lease of.
type claimed struct {
	g      mustgather.Gathering
	holder string
	log    *slog.Logger
}

// claim takes the lease of an admitted gathering and claims it. It returns
// nil and a nil error when another delivery claimed it first; an error
// asks for the event again.
func (r *Runner) claim(ctx context.Context, g mustgather.Gathering, holder string, log *slog.Logger) (*claimed, error) {
	// Hold the lease before claiming, so that the reaper never sees a
	// claimed gathering without one. The lease names this run alone, so
	// that a redelivery never renews or releases the lease of a run that is
	// under way, or of one that died.
	switch err := r.d.Leases.Hold(ctx, g.ID, holder); {
	case errors.Is(err, mustgather.ErrLeaseHeld):
		return nil, r.leasedElsewhere(ctx, g.ID, log)
	case err != nil:
		return nil, err
	}
	id := g.ID
	g, err := r.d.Store.Claim(ctx, id, r.d.Now())
	if err != nil {
		if rerr := r.d.Leases.Release(context.WithoutCancel(ctx), id, holder); rerr != nil {
			log.Warn("release lease", "err", rerr)
		}
		if errors.Is(err, mustgather.ErrAlreadyClaimed) || errors.Is(err, mustgather.ErrNotFound) {
			log.Info("gathering not run again", "reason", err)
			return nil, nil
		}
		return nil, err
	}
	return &claimed{g: g, holder: holder, log: log}, nil
}

// leasedElsewhere decides what to do with a requested event whose gathering
// another run holds the lease on: nothing if that run claimed it; if it is
// still new (its runner died between lease and claim), ask for the event
// again, after that lease has lapsed.
func (r *Runner) leasedElsewhere(ctx context.Context, id mustgather.ID, log *slog.Logger) error {
	g, err := r.d.Store.Get(ctx, id)
	switch {
	case errors.Is(err, mustgather.ErrNotFound):
		return nil
	case err != nil:
		return err
	case g.Status != mustgather.StatusNew:
		log.Info("gathering not run again", "reason", "another run holds its lease", "status", g.Status)
		return nil
	}
	return fmt.Errorf("gathering %d: %w; try again", id, ErrLeasedElsewhere)
}

// newHolder returns a name for one run's lease: unique, and saying which
// process holds it.
func newHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:12])
}

// run carries a claimed gathering to its end, from its start.
func (r *Runner) run(ctx context.Context, g mustgather.Gathering, holder string, log *slog.Logger) {
	r.runAs(ctx, g, holder, log, attempt{
		gatherer: r.d.Gatherer,
		out:      newOutputLog(r.cfg.OutputTail, r.cfg.LogLimit),
		timeout:  g.TimeoutDuration(r.cfg.DefaultTimeout),
	})
}

// attempt is how one run carries a gathering: from its start, or on from
// where a runner that stopped left it (see takeOver).
type attempt struct {
	gatherer mustgather.Gatherer
	// out holds the output so far.
	out *outputLog
	// seq is the Seq of the update before the run's first.
	seq uint64
	// timeout is how long the run has until the gathering is stopped.
	timeout time.Duration
}

// runAs carries a gathering whose lease holder holds to its end. Nothing
// here returns early without a final status: every path ends in completed
// or error, recorded in the store before the lease is released, except
// for a run whose lease another runner took over, which drops its work
// and records nothing (see dropOnTakeover).
func (r *Runner) runAs(ctx context.Context, g mustgather.Gathering, holder string, log *slog.Logger, a attempt) {
	started := r.d.Now()
	r.m.running.Inc()
	defer r.m.running.Dec()

	// work outlives ctx by FinishGrace so that a stopped gathering is still
	// archived and reported, and ends at the latest CopyTimeout after the
	// gathering's timeout.
	timeout := a.timeout
	work, cancelWork := context.WithTimeoutCause(context.WithoutCancel(ctx), timeout+r.cfg.CopyTimeout,
		fmt.Errorf("%w: copying what was gathered did not end within %s after the timeout", mustgather.ErrTimedOut, r.cfg.CopyTimeout))
	defer cancelWork()
	// The final status and the lease release get time of their own, even
	// when work has run out.
	afterWork := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FinishGrace)
	}
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.FinishGrace, cancelWork) })
	defer stopAfter()

	work, drop := context.WithCancelCause(work)
	defer drop(nil)
	stopLease := r.keepLease(work, g.ID, holder, log, drop)
	defer func() {
		stopLease()
		rctx, cancel := afterWork()
		defer cancel()
		if err := r.d.Leases.Release(rctx, g.ID, holder); err != nil {
			log.Warn("release lease", "err", err)
		}
		r.freeSlot(rctx, g.ID, holder, log)
	}()

	rep := &reporter{r: r, id: g.ID, seq: a.seq, first: a.seq + 1, log: log}
	out := a.out
	// A run that takes over starts with the output so far.
	tail, _ := out.Tail()
	rep.send(work, mustgather.Update{Status: mustgather.StatusInProgress, ExecOutput: tail})
	log.Info("gathering started", "timeout", g.Timeout, "image", g.Image, "command", g.Command)

	// stop is not a child of ctx: its cause must say why it stopped, and a
	// cancelled parent would only say "context canceled".
	stop, cancelStop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelStop(nil)
	timer := time.AfterFunc(timeout, func() { cancelStop(fmt.Errorf("%w after %s", mustgather.ErrTimedOut, g.Timeout)) })
	defer timer.Stop()
	stopOnShutdown := context.AfterFunc(ctx, func() { cancelStop(mustgather.ErrShutdown) })
	defer stopOnShutdown()

	stopFollow := r.followRecord(work, g.ID, holder, cancelStop, log)
	defer stopFollow()

	progressDone := r.reportProgress(work, rep, out)

	name := mustgather.ArchiveName(g.ID, g.CustomName)
	job := mustgather.Job{Gathering: g, Stop: stop, Log: out, Runner: holder}
	size, redacted, gerr, uerr := r.gatherAndUpload(work, cancelStop, a.gatherer, job, name, out, started)
	progressDone()
	if r.dropOnTakeover(work, log) {
		return
	}

	tail, _ = out.Tail()
	end := mustgather.Update{ExecOutput: tail}
	if uerr == nil {
		end.ArchiveName, end.ArchiveSize, end.Redaction = name, size, redacted
	}
	if gerr == nil && uerr == nil {
		end.Status = mustgather.StatusCompleted
	} else {
		end.Status = mustgather.StatusError
		end.Reason = reason(gerr, uerr)
		switch {
		case errors.Is(uerr, mustgather.ErrArchiveTooLarge):
			// The gatherer failed only because its archive was cut off.
			end.Reason = uerr.Error()
		case errors.Is(gerr, mustgather.ErrCanceled):
			end.Reason = mustgather.ReasonCanceled
			end.ExecOutput = mustgather.AppendLine(end.ExecOutput, canceledLine, r.cfg.OutputTail)
		}
		if uerr != nil {
			// The gatherer's error is in the output already.
			end.ExecOutput = mustgather.AppendLine(end.ExecOutput, "error: "+uerr.Error(), r.cfg.OutputTail)
		}
	}
	fctx, cancelFinal := afterWork()
	defer cancelFinal()
	if !r.finish(fctx, rep, end, log) {
		return
	}
	if end.Status == mustgather.StatusCompleted {
		log.Info("gathering completed", "archive", name, "size", size, "took", r.d.Now().Sub(started))
	} else {
		log.Warn("gathering failed", "reason", end.Reason, "archived", uerr == nil)
	}
	if end.Reason == mustgather.ReasonCanceled {
		r.m.canceled.Inc()
	}
	r.m.finished.WithLabelValues(string(end.Status)).Inc()
	r.m.duration.Observe(r.d.Now().Sub(started).Seconds())
	if uerr == nil {
		r.m.archiveBytes.Add(float64(size))
	}
}

// finish records the gathering's final status, then announces it and
// settles the gathering. It reports whether this run's status is the one
// recorded. When the reaper recorded another final status first, this
// run's archive belongs to no record and is removed.
func (r *Runner) finish(ctx context.Context, rep *reporter, end mustgather.Update, log *slog.Logger) bool {
	end = rep.stamp(end)
	got, err := r.record(ctx, end, log)
	// A stale answer can still be ours: an earlier attempt wrote it and
	// only its answer was lost. The reaper's failure can have the same Seq,
	// never the same reason.
	ours := err == nil || errors.Is(err, mustgather.ErrStale) && got.Seq == end.Seq && got.Status == end.Status &&
		got.Reason == end.Reason && got.ArchiveName == end.ArchiveName
	switch {
	case ours:
		announce(ctx, r.d.Store, r.d.Events, end, log)
		return true
	case errors.Is(err, mustgather.ErrStale), errors.Is(err, mustgather.ErrNotFound):
		log.Warn("gathering already ended; this run's result is dropped", "status", got.Status, "reason", got.Reason, "err", err)
		r.m.finished.WithLabelValues("superseded").Inc()
		if end.ArchiveName != "" && got.ArchiveName != end.ArchiveName {
			if err := r.d.Archives.Delete(ctx, mustgather.ArchiveKey(end.ID, end.ArchiveName)); err != nil {
				log.Error("remove the archive of a superseded run", "archive", end.ArchiveName, "err", err)
			}
		}
	default:
		log.Error("final status not recorded; the reaper will end the gathering", "status", end.Status, "err", err)
	}
	return false
}

// record writes u to the store, retrying failures other than a stale update
// with a back-off until ctx ends. ErrStale with the gathering holding u
// means an earlier attempt wrote it and only its answer was lost.
func (r *Runner) record(ctx context.Context, u mustgather.Update, log *slog.Logger) (g mustgather.Gathering, err error) {
	backOff(ctx, func(int) bool {
		g, err = r.d.Store.Apply(ctx, u)
		if err == nil || errors.Is(err, mustgather.ErrStale) || errors.Is(err, mustgather.ErrNotFound) {
			return true
		}
		log.Warn("record final status; retrying", "status", u.Status, "err", err)
		return false
	})
	return g, err
}

// announce publishes the final status event of u, already recorded, and
// settles the gathering. If it cannot, the gathering stays unsettled and
// the reaper publishes the event again.
func announce(ctx context.Context, store mustgather.Store, events mustgather.Events, u mustgather.Update, log *slog.Logger) {
	if err := publish(ctx, events, u, log); err != nil {
		log.Warn("final status event not published; the reaper will publish it", "status", u.Status, "err", err)
		return
	}
	if err := store.Settle(ctx, u.ID); err != nil {
		log.Warn("settle gathering; the reaper will", "err", err)
	}
}

// gatherAndUpload runs the gatherer into a tar.gz stream that is uploaded
// as it is written: no temporary file, no whole archive in memory. An
// archive that grows past MaxArchiveBytes fails the upload, which the
// store aborts, and stops the gatherer through halt.
func (r *Runner) gatherAndUpload(work context.Context, halt context.CancelCauseFunc, gatherer mustgather.Gatherer, job mustgather.Job, name string, out *outputLog, started time.Time) (size int64, redacted *mustgather.Redaction, gerr, uerr error) {
	g := job.Gathering
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		var src io.Reader = pr
		if r.cfg.MaxArchiveBytes > 0 {
			src = &cappedReader{r: pr, left: r.cfg.MaxArchiveBytes}
		}
		n, err := r.d.Archives.Put(work, mustgather.ArchiveKey(g.ID, name), src)
		size = n
		if errors.Is(err, mustgather.ErrArchiveTooLarge) {
			err = fmt.Errorf("%w: over the maximum of %d bytes (RUNNER_MAX_ARCHIVE_BYTES); gathering stopped, upload aborted, nothing kept", mustgather.ErrArchiveTooLarge, r.cfg.MaxArchiveBytes)
			halt(err)
		}
		// Unblock the writer side if the upload gave up early.
		pr.CloseWithError(fmt.Errorf("upload stopped: %w", err))
		uploaded <- err
	}()

	aw := archive.NewWriter(pw)
	job.Archive = aw
	red, log := r.startRedaction(g, aw, out)
	job.Log = log
	// What the gatherer leaves for a runner that takes over to re-attach
	// to stays until the archive is stored.
	var (
		cleanupsMu sync.Mutex
		cleanups   []func(context.Context, io.Writer)
	)
	job.Defer = func(f func(context.Context, io.Writer)) {
		cleanupsMu.Lock()
		defer cleanupsMu.Unlock()
		cleanups = append(cleanups, f)
	}
	defer func() {
		cleanupsMu.Lock()
		defer cleanupsMu.Unlock()
		for _, f := range slices.Backward(cleanups) {
			f(work, out)
		}
	}()
	gerr = gatherer.Gather(work, job)
	if gerr != nil {
		fmt.Fprintf(log, "error: %s\n", reason(gerr, nil))
	}
	red.stop()
	werr := errors.Join(
		aw.AddBytes("timestamp", []byte(fmt.Sprintf("%s\n%s\n", started.Format(time.RFC3339Nano), r.d.Now().Format(time.RFC3339Nano))), r.d.Now()),
		aw.AddBytes("must-gather.logs", out.Full(), r.d.Now()),
		red.addReport(r.d.Now()),
		aw.Close(),
	)
	if werr != nil {
		pw.CloseWithError(werr)
	} else {
		pw.Close()
	}
	uerr = <-uploaded
	if uerr == nil && werr != nil {
		uerr = werr
	}
	if uerr != nil {
		uerr = fmt.Errorf("store archive: %w", uerr)
	}
	return size, red.summary(), gerr, uerr
}

// cappedReader reads from r until more than left bytes have come, then
// fails with mustgather.ErrArchiveTooLarge, so that the store aborts the
// upload instead of completing it.
type cappedReader struct {
	r    io.Reader
	left uint64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if uint64(n) > c.left {
		c.left = 0
		return 0, mustgather.ErrArchiveTooLarge
	}
	c.left -= uint64(n)
	return n, err
}

func reason(gerr, uerr error) string {
	switch {
	case gerr != nil && uerr != nil:
		return gerr.Error() + "; " + uerr.Error()
	case gerr != nil:
		return gerr.Error()
	case uerr != nil:
		return uerr.Error()
	}
	return ""
}

// keepLease renews the gathering's lease until the returned func is
// called. When another runner holds it, that runner took the gathering
// over, and lost is called with ErrTakenOver.
func (r *Runner) keepLease(ctx context.Context, id mustgather.ID, holder string, log *slog.Logger, lost context.CancelCauseFunc) (stop func()) {
	return every(ctx, r.cfg.LeaseRenew, func(ctx context.Context) {
		err := r.d.Leases.Hold(ctx, id, holder)
		switch {
		case errors.Is(err, mustgather.ErrLeaseHeld):
			lost(ErrTakenOver)
		case err != nil && ctx.Err() == nil:
			log.Warn("renew lease", "err", err)
		}
	})
}

// reportProgress sends a progress event at most once per
// ProgressInterval while the output grows, until the returned func is
// called.
func (r *Runner) reportProgress(ctx context.Context, rep *reporter, out *outputLog) (stop func()) {
	var seen uint64
	return every(ctx, r.cfg.ProgressInterval, func(ctx context.Context) {
		tail, v := out.Tail()
		if v == seen {
			return
		}
		seen = v
		rep.send(ctx, mustgather.Update{Status: mustgather.StatusInProgress, ExecOutput: tail})
	})
}

// every calls fn once per interval, in a goroutine of its own, until the
// returned func is called; that func returns once fn is done for good. The
// ctx fn gets ends when stop is called.
func every(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// reporter numbers a gathering's updates and publishes them.
type reporter struct {
	r     *Runner
	id    mustgather.ID
	seq   uint64
	first uint64 // the Seq of the run's first update
	log   *slog.Logger
}

// stamp gives u the gathering's id, the next sequence number and the time.
func (p *reporter) stamp(u mustgather.Update) mustgather.Update {
	p.seq++
	u.ID, u.Seq, u.Time = p.id, p.seq, p.r.d.Now()
	return u
}

// send publishes an inprogress update. The run's first, the start, is
// retried like a final status; a later one is best effort, as the next one
// carries the same output.
func (p *reporter) send(ctx context.Context, u mustgather.Update) {
	u = p.stamp(u)
	if u.Seq > p.first {
		if err := p.r.d.Events.Updated(ctx, u); err != nil {
			p.log.Warn("publish progress", "err", err)
		}
		return
	}
	if err := publish(ctx, p.r.d.Events, u, p.log); err != nil {
		p.log.Warn("start not published", "err", err)
	}
}

// publish publishes u, retrying a failed publish with a back-off until ctx
// ends, so that a status is not lost to a short outage.
func publish(ctx context.Context, events mustgather.Events, u mustgather.Update, log *slog.Logger) (err error) {
	backOff(ctx, func(attempt int) bool {
		if err = events.Updated(ctx, u); err == nil {
			return true
		}
		log.Warn("publish status; retrying", "status", u.Status, "attempt", attempt, "err", err)
		return false
	})
	return err
}

// backOff calls attempt, numbered from 1, until it reports done or ctx
// ends, waiting 100ms after the first failure and twice as long after each
// next one, up to 5s.
func backOff(ctx context.Context, attempt func(n int) (done bool)) {
	delay := 100 * time.Millisecond
	for n := 1; !attempt(n); n++ {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(delay*2, 5*time.Second)
	}
}
