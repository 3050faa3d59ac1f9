package mustgather

import (
	"context"
	"errors"
)

// Reattacher is implemented by a Gatherer whose work goes on without the
// runner that started it, as a pod does in a cluster when its runner dies.
// Another runner that takes over the gathering's lapsed lease re-attaches to
// that work instead of failing the gathering.
type Reattacher interface {
	// Reattach finds the work of g that a stopped run left going and makes
	// it runner's. It returns a Gatherer whose Gather carries the job on
	// from there (following the rest of the output, waiting for the end,
	// archiving what was gathered, cleaning up) and never starts the work
	// again, and a line for the gathering's output that says what it
	// re-attached to. It returns an error wrapping ErrGone when nothing of
	// the work is left to re-attach to.
	Reattach(ctx context.Context, g Gathering, runner string) (Gatherer, string, error)
}

// ErrGone says that the work of a gathering whose runner stopped is no
// longer there: the gathering cannot be carried on and fails.
var ErrGone = errors.New("nothing of the gathering is left to re-attach to")
