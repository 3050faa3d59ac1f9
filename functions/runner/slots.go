package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// capped reports whether gatherings wait for a slot under MaxRunning.
func (r *Runner) capped() bool { return r.d.Slots != nil && r.cfg.MaxRunning > 0 }

// waitForSlot waits until the gathering may run under MaxRunning, and
// reports true once holder has a slot for it. Meanwhile the gathering
// stays new, its place in the queue is renewed like a lease (so that the
// reaper leaves it alone while this runner lives), and its exec-output
// says that it waits. It reports false, with nil, when there is nothing to
// run: another runner has it in the queue, or it was canceled or claimed
// meanwhile; with an error, when the event is to come again, as when ctx
// ends.
//
// It asks again once a second rather than watching the slots and the
// record: each of its requests waits at most the store's bound, and one
// lost to a NATS restart is made again on the next turn, whereas a watch
// would have to be made again after every restart.
func (r *Runner) waitForSlot(ctx context.Context, g mustgather.Gathering, holder string, log *slog.Logger) (bool, error) {
	if !r.capped() {
		return true, nil
	}
	running, err := r.d.Slots.Take(ctx, g.ID, holder, r.cfg.MaxRunning)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, mustgather.ErrNoSlot) {
		return false, err
	}
	switch err := r.d.Slots.Wait(ctx, g.ID, holder); {
	case errors.Is(err, mustgather.ErrLeaseHeld):
		log.Info("gathering not run here: another runner holds it waiting for a slot")
		return false, nil
	case err != nil:
		return false, err
	}
	r.m.waiting.Inc()
	defer r.m.waiting.Dec()
	took := false
	defer func() {
		if !took {
			r.freeSlot(ctx, g.ID, holder, log)
		}
	}()
	log.Info("gathering waits for a slot", "running", running, "max", r.cfg.MaxRunning)
	r.noteWaiting(ctx, g.ID, running, log)
	interval := min(r.cfg.LeaseRenew, time.Second)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("gathering %d still waits for a slot: %w", g.ID, context.Cause(ctx))
		case <-tick.C:
		}
		switch cur, err := r.d.Store.Get(ctx, g.ID); {
		case errors.Is(err, mustgather.ErrNotFound), err == nil && cur.Status != mustgather.StatusNew:
			log.Info("gathering canceled or ended while it waited for a slot")
			return false, nil
		case err != nil:
			log.Warn("read the record of a gathering that waits for a slot", "err", err)
		}
		if renewDue(renewed, interval, r.cfg.LeaseRenew) {
			if err := r.d.Slots.Wait(ctx, g.ID, holder); err != nil {
				log.Warn("renew the place in the queue for a slot", "err", err)
			}
			renewed = time.Now()
		}
		now, err := r.d.Slots.Take(ctx, g.ID, holder, r.cfg.MaxRunning)
		switch {
		case err == nil:
			took = true
			return true, nil
		case !errors.Is(err, mustgather.ErrNoSlot):
			log.Warn("take a slot", "err", err)
		case now != running:
			running = now
			r.noteWaiting(ctx, g.ID, running, log)
		}
	}
}

// noteWaiting says in the gathering's exec-output that it waits.
func (r *Runner) noteWaiting(ctx context.Context, id mustgather.ID, running int, log *slog.Logger) {
	note := fmt.Sprintf("waiting for a slot: %d of %d running\n", running, r.cfg.MaxRunning)
	if err := r.d.Store.Note(ctx, id, note); err != nil && !errors.Is(err, mustgather.ErrAlreadyClaimed) {
		log.Warn("note that the gathering waits", "err", err)
	}
}

// takeSlot takes a slot for a transport that cannot hold an event while
// it waits (HTTP): with none free it notes that the gathering waits and
// returns an error wrapping eventing.ErrBusy, so that the event comes
// again later.
func (r *Runner) takeSlot(ctx context.Context, g mustgather.Gathering, holder string, log *slog.Logger) error {
	if !r.capped() {
		return nil
	}
	running, err := r.d.Slots.Take(ctx, g.ID, holder, r.cfg.MaxRunning)
	if errors.Is(err, mustgather.ErrNoSlot) {
		r.noteWaiting(ctx, g.ID, running, log)
		return fmt.Errorf("runner: %d of %d gatherings run in the deployment: %w", running, r.cfg.MaxRunning, eventing.ErrBusy)
	}
	return err
}

// renewSlot keeps holder's slot from lapsing while its gathering runs.
func (r *Runner) renewSlot(ctx context.Context, id mustgather.ID, holder string, log *slog.Logger) {
	if !r.capped() {
		return
	}
	// A run taken over from a dead runner has no slot: it takes one if
	// one is free, and runs on without otherwise.
	if _, err := r.d.Slots.Take(ctx, id, holder, r.cfg.MaxRunning); err != nil && ctx.Err() == nil && !errors.Is(err, mustgather.ErrNoSlot) {
		log.Warn("renew slot", "err", err)
	}
}

// freeSlot gives up holder's slot and place in the queue, if any.
func (r *Runner) freeSlot(ctx context.Context, id mustgather.ID, holder string, log *slog.Logger) {
	if !r.capped() {
		return
	}
	if err := r.d.Slots.Free(context.WithoutCancel(ctx), id, holder); err != nil {
		log.Warn("free slot", "err", err)
	}
}

// renewDue reports whether a key last renewed at renewed, looked at once
// per interval, is to be renewed now so that renewals are at most every
// apart: waiting for the next turn would be later than that. (Checking
// only since(renewed) >= every would renew at 2*every when interval and
// every are equal, as a turn comes a little before every has passed.)
func renewDue(renewed time.Time, interval, every time.Duration) bool {
	return time.Since(renewed)+interval > every
}
