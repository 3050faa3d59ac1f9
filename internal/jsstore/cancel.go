package jsstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Cancel cancels the gathering by compare-and-set on its record, retried
// on conflict and decided afresh on what it reads each time: of a cancel
// and a claim, or a cancel and a final status, whichever is written first
// wins, and the other sees it. A gathering that has ended is returned as it
// is, with an error wrapping mustgather.ErrEnded.
func (s *Store) Cancel(ctx context.Context, id mustgather.ID, now time.Time, note string) (mustgather.Gathering, bool, error) {
	var ended bool
	out, err := s.modify(ctx, id, func(g mustgather.Gathering) (mustgather.Gathering, error) {
		if g.CancelRequested && g.Status == mustgather.StatusInProgress {
			// Asked before: nothing to write.
			return g, errUnchanged
		}
		var err error
		g, ended, err = g.Cancel(now, note)
		return g, err
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	if err != nil {
		return out, false, fmt.Errorf("cancel gathering %d: %w", id, err)
	}
	return out, ended, nil
}

// errUnchanged tells modify's caller that there was nothing to write.
var errUnchanged = errors.New("unchanged")

// Note sets the exec-output of a gathering that is still new.
func (s *Store) Note(ctx context.Context, id mustgather.ID, note string) error {
	_, err := s.modify(ctx, id, func(g mustgather.Gathering) (mustgather.Gathering, error) {
		if g.Status == mustgather.StatusNew && g.ExecOutput == note {
			return g, errUnchanged
		}
		return g.Note(note)
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("note on gathering %d: %w", id, err)
	}
	return nil
}
