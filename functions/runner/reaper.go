package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Reap looks once at every unfinished gathering and makes sure it will end:
//   - new and older than RequeueAfter: its requested event is published
//     again (the id makes the broker drop it if the first one is still
//     there, and the claim keeps it from running twice);
//   - new and older than PendingTimeout: it fails, as no runner took it;
//   - inprogress with no lease: its runner died, so it fails.
func (r *Runner) Reap(ctx context.Context) error {
	ids, err := r.d.Store.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := r.reapOne(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) reapOne(ctx context.Context, id mustgather.ID) error {
	g, err := r.d.Store.Get(ctx, id)
	if errors.Is(err, mustgather.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reap gathering %d: %w", id, err)
	}
	now := r.d.Now()
	switch g.Status {
	case mustgather.StatusNew:
		age := now.Sub(g.CreatedAt.Time)
		switch {
		case age > r.cfg.PendingTimeout:
			return r.fail(ctx, g, fmt.Sprintf("no runner took the gathering within %s", r.cfg.PendingTimeout))
		case age > r.cfg.RequeueAfter:
			r.d.Logger.Info("requeue gathering", "gathering", id, "age", age.Round(time.Second))
			r.m.reaped.WithLabelValues("requeued").Inc()
			if err := r.d.ReaperEvents.Requested(ctx, g); err != nil {
				return fmt.Errorf("requeue gathering %d: %w", id, err)
			}
		}
	case mustgather.StatusInProgress:
		held, err := r.d.Leases.Held(ctx, id)
		if err != nil {
			return fmt.Errorf("reap gathering %d: %w", id, err)
		}
		if !held {
			return r.fail(ctx, g, "the runner stopped before the gathering finished")
		}
	}
	return nil
}

func (r *Runner) fail(ctx context.Context, g mustgather.Gathering, why string) error {
	r.d.Logger.Warn("reaper fails gathering", "gathering", g.ID, "status", g.Status, "reason", why)
	r.m.reaped.WithLabelValues("failed").Inc()
	u := mustgather.Update{
		ID: g.ID, Seq: g.Seq + 1, Status: mustgather.StatusError, Time: r.d.Now(),
		ExecOutput: appendLine(g.ExecOutput, "error: "+why, r.cfg.OutputTail),
		Reason:     why,
	}
	if err := r.d.ReaperEvents.Updated(ctx, u); err != nil {
		return fmt.Errorf("fail gathering %d: %w", g.ID, err)
	}
	return nil
}

// RunReaper reaps at once and then every ReapInterval until ctx ends.
func (r *Runner) RunReaper(ctx context.Context) {
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
