package main

import (
	"context"

	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// openSlots opens the run slots of RUNNER_MAX_RUNNING, shared by every
// runner on the same NATS; nil when there is no cap.
func openSlots(ctx context.Context, cfg config, d *deps) (mustgather.Slots, error) {
	if cfg.Runner.MaxRunning <= 0 {
		return nil, nil
	}
	return jsstore.NewSlots(ctx, d.js, cfg.Store)
}
