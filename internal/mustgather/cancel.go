package mustgather

import (
	"context"
	"fmt"
	"time"
)

// Cancel cancels gathering id in s (see Store.Cancel). A new gathering
// ends at once: Cancel announces its final status through e and settles
// it, as a runner does; when only that fails it returns the ended
// gathering with an error (wrapping ErrNotAnnounced when the event was
// not published), and the reaper announces it. A gathering in progress is marked for its runner, which
// stops it and announces its end. ended reports which happened.
func Cancel(ctx context.Context, s Store, e Events, id ID, now time.Time, note string) (g Gathering, ended bool, err error) {
	g, ended, err = s.Cancel(ctx, id, now, note)
	if err != nil || !ended {
		return g, ended, err
	}
	if err := e.Updated(ctx, g.Final()); err != nil {
		return g, true, fmt.Errorf("gathering %d: %w: %w", id, ErrNotAnnounced, err)
	}
	if err := s.Settle(ctx, id); err != nil {
		// The reaper settles it, publishing the event once more (a copy
		// that the stream drops).
		return g, true, err
	}
	return g, true, nil
}
