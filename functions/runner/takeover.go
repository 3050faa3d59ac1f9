package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// ErrTakenOver ends the work of a run whose lease another runner took:
// the lease had lapsed (the run could not renew it in time, as during a
// NATS outage) and that runner's reaper took the gathering over.
var ErrTakenOver = errors.New("another runner took the gathering over")

// dropOnTakeover reports whether the run's work ended because another
// runner took the gathering over. Such a run records and announces
// nothing, and leaves the archive to that runner: its upload was aborted
// with its work, and the gatherer left what it ran to that runner.
func (r *Runner) dropOnTakeover(work context.Context, log *slog.Logger) bool {
	if !errors.Is(context.Cause(work), ErrTakenOver) {
		return false
	}
	log.Warn("another runner took the gathering over; this run stops and records nothing")
	r.m.finished.WithLabelValues("taken-over").Inc()
	return true
}

// takeoverSeqGap is added to the Seq of a gathering's record to number the
// updates of a run that takes it over: updates the stopped run published
// shortly before it stopped may not be in the record yet, and an update of
// the new run with the same Seq would be dropped as a repeat.
const takeoverSeqGap = 1 << 20

// takeOver carries on a gathering whose runner stopped, found inprogress
// with no lease, when the gatherer's work outlives its runner (see
// mustgather.Reattacher): it takes the lease, re-attaches to the work and
// runs the gathering to its end in the background, under ctx. It fails the
// gathering itself when nothing of the work is left. The gathering keeps
// its deadline: its timeout counts from when its work started. takeOver
// reports false, for the caller to fail the gathering as before, when the
// gatherer cannot re-attach or the gathering is past any hard end it can
// have; an error leaves the gathering for the next pass.
func (r *Runner) takeOver(ctx context.Context, g mustgather.Gathering) (bool, error) {
	ra, ok := r.d.Gatherer.(mustgather.Reattacher)
	// A gathering starts at the latest PendingTimeout after its creation,
	// and ends at the latest CopyTimeout after its timeout.
	timeout := g.TimeoutDuration(r.cfg.DefaultTimeout)
	if !ok || r.d.Now().After(g.CreatedAt.Add(r.cfg.PendingTimeout+timeout+r.cfg.CopyTimeout)) {
		return false, nil
	}
	holder := newHolder()
	switch err := r.d.Leases.Hold(ctx, g.ID, holder); {
	case errors.Is(err, mustgather.ErrLeaseHeld):
		return true, nil // another runner took it over
	case err != nil:
		return false, err
	}
	log := r.d.Logger.With("gathering", g.ID)
	release := func() {
		if err := r.d.Leases.Release(context.WithoutCancel(ctx), g.ID, holder); err != nil {
			log.Warn("release lease", "err", err)
		}
	}
	// With the lease held, the record is what the take-over goes on from:
	// it must not have changed since the reaper read it.
	cur, err := r.d.Store.Get(ctx, g.ID)
	if err != nil || cur.Revision != g.Revision {
		release()
		if errors.Is(err, mustgather.ErrNotFound) {
			err = nil
		}
		return true, err
	}
	found, err := ra.Reattach(ctx, cur, holder)
	if errors.Is(err, mustgather.ErrNotStarted) {
		// Nothing ran: the gathering starts now, as a run of this
		// runner's own, with its whole timeout.
		out := r.outputGoingOn(cur.ExecOutput, fmt.Sprintf("runner %s took the gathering over and starts it: %v", holder, err))
		log.Info("gathering taken over before it started; starting it", "err", err)
		r.m.reaperActions.WithLabelValues("restarted").Inc()
		r.takeovers.Go(func() {
			r.runAs(ctx, cur, holder, log, attempt{gatherer: r.d.Gatherer, out: out, seq: cur.Seq + takeoverSeqGap, timeout: timeout})
		})
		return true, nil
	}
	if errors.Is(err, mustgather.ErrGone) {
		err = r.failOrphan(ctx, cur, fmt.Sprintf("the runner stopped before the gathering finished: %v", err))
		release()
		return true, err
	}
	if err != nil {
		release()
		return false, fmt.Errorf("re-attach to gathering %d: %w", g.ID, err)
	}
	out := r.outputGoingOn(cur.ExecOutput, found.Line)
	log.Info("gathering taken over", "reattached", found.Line)
	// The gathering keeps its deadline.
	started := found.Started
	if started.IsZero() {
		started = cur.CreatedAt.Time
	}
	left := max(started.Add(timeout).Sub(r.d.Now()), 0)
	r.m.reaperActions.WithLabelValues("reattached").Inc()
	r.takeovers.Go(func() {
		// What the stopped run was uploading is incomplete: the run
		// uploads the archive anew.
		if err := r.d.Archives.Delete(ctx, mustgather.ArchiveKey(cur.ID, mustgather.ArchiveName(cur.ID, cur.CustomName))); err != nil {
			log.Warn("remove the upload of the stopped run", "err", err)
		}
		r.runAs(ctx, cur, holder, log, attempt{gatherer: found.Gatherer, out: out, seq: cur.Seq + takeoverSeqGap, timeout: left})
	})
	return true, nil
}

// outputGoingOn returns the output of a run that takes a gathering over:
// the output so far, which is all the stopped run left of it, and line.
func (r *Runner) outputGoingOn(sofar, line string) *outputLog {
	out := newOutputLog(r.cfg.OutputTail, r.cfg.LogLimit)
	if sofar != "" && !strings.HasSuffix(sofar, "\n") {
		sofar += "\n"
	}
	_, _ = out.WriteString(sofar + line + "\n")
	return out
}
