package mustgather

import (
	"context"
	"errors"
	"time"
)

// Reattacher is implemented by a Gatherer whose work goes on without the
// runner that started it, as a pod does in a cluster when its runner dies.
// Another runner that takes over the gathering's lapsed lease re-attaches to
// that work instead of failing the gathering.
type Reattacher interface {
	// Reattach finds the work of g that a stopped run left going and makes
	// it runner's. It returns an error wrapping ErrGone when nothing of
	// the work is left to re-attach to, and one wrapping ErrNotStarted
	// when the stopped run had not started any of it (what it had
	// prepared, Reattach removes).
	Reattach(ctx context.Context, g Gathering, runner string) (Reattached, error)
}

// Reattached is the work of a gathering a runner re-attached to.
type Reattached struct {
	// Gatherer's Gather carries the job on from where the stopped run
	// left it (following the rest of the output, waiting for the end,
	// archiving what was gathered, cleaning up); it never starts the work
	// again.
	Gatherer Gatherer
	// Line for the gathering's output says what was re-attached to.
	Line string
	// Started is when the work started: the gathering's timeout counts
	// from then. Zero means unknown: it counts from the gathering's
	// creation.
	Started time.Time
}

// ErrGone says that the work of a gathering whose runner stopped is no
// longer there: the gathering cannot be carried on and fails.
var ErrGone = errors.New("nothing of the gathering is left to re-attach to")

// ErrNotStarted says that the work of a gathering whose runner stopped had
// not started: nothing of it ran, so the runner that takes it over starts
// it as a run of its own would.
var ErrNotStarted = errors.New("the stopped run had not started the gathering")
