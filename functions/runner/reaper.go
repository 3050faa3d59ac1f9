package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Reap looks once at every unsettled gathering and makes sure it will end:
//   - new and older than RequeueAfter: a new requested event is published,
//     attempt n for an age between n and n+1 times RequeueAfter, so that the
//     broker delivers each attempt once however many reapers send it, and
//     the claim keeps the gathering from running twice;
//   - new and older than PendingTimeout: it fails, as no runner took it;
//   - but new and waiting for a slot under MaxRunning (in the queue of a
//     live runner, or behind a full cap) is left alone: it waits its turn;
//   - inprogress with no lease: its runner died. When the gatherer's work
//     outlives its runner (a pod), the reaper takes the lease and carries
//     the gathering on from there (see takeOver; a cancel asked for is
//     then done by that run); otherwise, or when that work is gone, it
//     fails, as canceled if a cancel was asked for;
//   - ended but not settled: whoever ended it died before announcing it, so
//     its final status event is published again.
//
// A failure is written to the record by compare-and-set on the revision the
// reaper read, so it never overwrites a final status, or a claim, that came
// in between; only a failure that was written is announced.
func (r *Runner) Reap(ctx context.Context) error {
	ids, err := r.d.Store.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	var errs []error
	q := &queue{slots: r.d.Slots}
	for _, id := range ids {
		if err := r.reapOne(ctx, id, q); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// queue reads the slots once per reaper pass, when a pass needs them.
type queue struct {
	slots   mustgather.Slots
	read    bool
	waiting map[mustgather.ID]bool
	running int
}

func (q *queue) get(ctx context.Context) (map[mustgather.ID]bool, int, error) {
	if !q.read {
		var err error
		if q.waiting, q.running, err = q.slots.Queue(ctx); err != nil {
			return nil, 0, err
		}
		q.read = true
	}
	return q.waiting, q.running, nil
}

func (r *Runner) reapOne(ctx context.Context, id mustgather.ID, q *queue) error {
	g, err := r.d.Store.Get(ctx, id)
	if errors.Is(err, mustgather.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	now := r.d.Now()
	switch g.Status {
	case mustgather.StatusNew:
		age := now.Sub(g.CreatedAt.Time)
		if age > r.cfg.RequeueAfter && r.capped() {
			// A gathering that waits for a slot in a live runner, or behind
			// a full cap, is neither requeued nor failed: it waits its turn.
			waiting, running, err := q.get(ctx)
			if err != nil {
				return err
			}
			if waiting[id] || running >= r.cfg.MaxRunning {
				return nil
			}
		}
		switch {
		case age > r.cfg.PendingTimeout:
			return r.fail(ctx, g, fmt.Sprintf("no runner took the gathering within %s", r.cfg.PendingTimeout))
		case age > r.cfg.RequeueAfter:
			// The attempt depends on the gathering's age alone, not on who
			// sends it: reapers in several processes send the same attempt
			// under the same event id, and the broker keeps one.
			attempt := int(age / r.cfg.RequeueAfter)
			// Bounded like announce, so that a sink that does not answer
			// cannot hold up the pass, which also fails dead runs.
			rctx, cancel := context.WithTimeout(ctx, announceTimeout)
			sent, err := r.d.ReaperEvents.Requeued(rctx, g, attempt)
			cancel()
			if err != nil {
				return fmt.Errorf("requeue gathering %d: %w", id, err)
			}
			if sent {
				r.d.Logger.Info("requeued gathering", "gathering", id, "age", age.Round(time.Second), "attempt", attempt)
				r.m.reaperActions.WithLabelValues("requeued").Inc()
			}
		}
	case mustgather.StatusInProgress:
		held, err := r.d.Leases.Held(ctx, id)
		if err != nil {
			return err
		}
		if !held {
			if taken, err := r.takeOver(ctx, g); taken || err != nil {
				return err
			}
			return r.failOrphan(ctx, g, "the runner stopped before the gathering finished")
		}
	default:
		r.m.reaperActions.WithLabelValues("announced").Inc()
		r.announce(ctx, g.Final())
	}
	return nil
}

// fail ends g in error if its record has not changed since g was read, and
// then announces it. An archive a dead runner may have stored under the
// gathering's name belongs to no record, so it is removed.
func (r *Runner) fail(ctx context.Context, g mustgather.Gathering, why string) error {
	return r.failAs(ctx, g, why, "error: "+why)
}

// failOrphan fails g, whose runner died, saying why; as canceled, with
// nothing archived, if a cancel was asked for.
func (r *Runner) failOrphan(ctx context.Context, g mustgather.Gathering, why string) error {
	if g.CancelRequested {
		return r.failAs(ctx, g, mustgather.ReasonCanceled, "canceled: "+why+"; nothing was archived")
	}
	return r.fail(ctx, g, why)
}

// failAs is fail with reason as the gathering's reason and line as the last
// line of its output.
func (r *Runner) failAs(ctx context.Context, g mustgather.Gathering, reason, line string) error {
	u := mustgather.Update{
		ID: g.ID, Seq: g.Seq + 1, Status: mustgather.StatusError, Time: r.d.Now(),
		ExecOutput: mustgather.AppendLine(g.ExecOutput, line, r.cfg.OutputTail),
		Reason:     reason,
	}
	_, err := r.d.Store.ApplyAt(ctx, u, g.Revision)
	if errors.Is(err, mustgather.ErrStale) {
		// Claimed, renewed or ended since it was read: look again next time.
		return nil
	}
	if err != nil {
		return err
	}
	r.d.Logger.Warn("reaper failed gathering", "gathering", g.ID, "was", g.Status, "reason", reason)
	r.m.reaperActions.WithLabelValues("failed").Inc()
	if g.Status == mustgather.StatusInProgress {
		key := mustgather.ArchiveKey(g.ID, mustgather.ArchiveName(g.ID, g.CustomName))
		if err := r.d.Archives.Delete(ctx, key); err != nil {
			r.d.Logger.Warn("remove the archive of a failed gathering", "gathering", g.ID, "err", err)
		}
	}
	r.announce(ctx, u)
	return nil
}

// announce publishes a final status the reaper recorded or found
// unannounced, giving up after a while so that one pass cannot hang on an
// outage; the next pass tries again.
func (r *Runner) announce(ctx context.Context, u mustgather.Update) {
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	announce(ctx, r.d.Store, r.d.ReaperEvents, u, r.d.Logger.With("gathering", u.ID))
}

// announceTimeout bounds how long the reaper tries to publish one event.
const announceTimeout = 10 * time.Second

// RunReaper reaps at once and then every ReapInterval until ctx ends, and
// then waits for the gatherings it took over, which stop with ctx, to end.
func (r *Runner) RunReaper(ctx context.Context) {
	defer r.takeovers.Wait()
	t := time.NewTicker(r.cfg.ReapInterval)
	defer t.Stop()
	for {
		if err := r.Reap(ctx); err != nil && ctx.Err() == nil {
			r.d.Logger.Warn("reaper", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
