package mustgather

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotAnnounced is returned by Start when the gathering was stored but
// its requested event was not published. The record is what counts: the
// reaper announces unfinished gatherings that no runner has picked up.
var ErrNotAnnounced = errors.New("gathering stored but not announced")

// Start stores g, a gathering NewGathering made from a validated request,
// and announces it to the runners. It is the one way a gathering begins,
// whether a user asks for it through the API or a trigger starts it, so
// that both store and announce the same way. When only the announcement
// fails, it returns the stored gathering with an error that wraps
// ErrNotAnnounced.
func Start(ctx context.Context, s Store, e Events, g Gathering) (Gathering, error) {
	g, err := s.Create(ctx, g)
	if err != nil {
		return g, err
	}
	if err := e.Requested(ctx, g); err != nil {
		return g, fmt.Errorf("gathering %d: %w: %w", g.ID, ErrNotAnnounced, err)
	}
	return g, nil
}
