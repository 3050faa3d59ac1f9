package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Expire deletes every gathering that ended more than Retention ago (by its
// last update): first its archive, then its record and custom-name. It
// never touches a gathering that is new or inprogress. Several runners may
// expire at once: deleting an archive twice is harmless, and the record is
// deleted by compare-and-set on the revision read, so each gathering is
// deleted once; a gathering another runner deleted first is skipped. It
// returns how many gatherings this call deleted.
func (r *Runner) Expire(ctx context.Context) (int, error) {
	if r.cfg.Retention <= 0 {
		return 0, nil
	}
	cutoff := r.d.Now().Add(-r.cfg.Retention)
	var errs []error
	deleted := 0
	list, err := r.d.Store.List(ctx, mustgather.Filter{})
	if err != nil {
		return 0, fmt.Errorf("expire: %w", err)
	}
	for _, g := range list {
		if !g.Status.Terminal() || !g.UpdatedAt.Before(cutoff) {
			continue
		}
		switch err := r.expireOne(ctx, g); {
		case err == nil:
			deleted++
		case errors.Is(err, mustgather.ErrNotFound), errors.Is(err, mustgather.ErrStale):
			// Another runner deleted it first.
		default:
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

func (r *Runner) expireOne(ctx context.Context, g mustgather.Gathering) error {
	if g.ArchiveName != "" {
		if err := r.d.Archives.Delete(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName)); err != nil {
			return fmt.Errorf("expire gathering %d: %w", g.ID, err)
		}
	}
	if err := r.d.Store.Delete(ctx, g.ID, g.Revision); err != nil {
		return err
	}
	r.d.Logger.Info("gathering deleted after the retention period", "gathering", g.ID, "ended", g.UpdatedAt.Time, "archive", g.ArchiveName)
	r.m.expired.Inc()
	return nil
}

// RunExpiry expires at once and then every RetentionInterval until ctx
// ends. With no Retention it returns at once.
func (r *Runner) RunExpiry(ctx context.Context) {
	if r.cfg.Retention <= 0 || r.cfg.RetentionInterval <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.RetentionInterval)
	defer t.Stop()
	for {
		if _, err := r.Expire(ctx); err != nil && ctx.Err() == nil {
			r.d.Logger.Warn("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
