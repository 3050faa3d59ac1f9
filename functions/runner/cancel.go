package runner

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// canceledLine ends the exec-output of a gathering that was canceled.
const canceledLine = "canceled: the gathering was stopped on request; what it had gathered is archived"

// cancelCheck is how often a run reads its record for a cancel, at most.
const cancelCheck = time.Second

// followRecord, until the returned func is called, reads the gathering's
// record once per cancelCheck (or LeaseRenew, if shorter) and renews the
// run's slot once per LeaseRenew; once the record asks for a cancel,
// whichever process wrote that, it stops the gathering with
// mustgather.ErrCanceled.
//
// It reads rather than watches: each read waits at most the store's bound
// for its answer, and one lost to a NATS restart is simply made again on
// the next turn, whereas a watch would have to be made again after every
// restart, and whoever waits for it to be in place would wait as long as
// NATS is away. It runs beside the lease's renewal, not in it, so that
// neither holds up the other.
func (r *Runner) followRecord(ctx context.Context, id mustgather.ID, holder string, stop context.CancelCauseFunc, log *slog.Logger) (done func()) {
	canceled := false
	renewed := time.Now()
	interval := min(r.cfg.LeaseRenew, cancelCheck)
	return every(ctx, interval, func(ctx context.Context) {
		if renewDue(renewed, interval, r.cfg.LeaseRenew) {
			r.renewSlot(ctx, id, holder, log)
			renewed = time.Now()
		}
		if canceled {
			return
		}
		g, err := r.d.Store.Get(ctx, id)
		switch {
		case err != nil:
			if ctx.Err() == nil && !errors.Is(err, mustgather.ErrNotFound) {
				log.Warn("read the record for a cancel; reading it again later", "err", err)
			}
		case g.CancelRequested && !g.Status.Terminal():
			canceled = true
			log.Info("gathering canceled; stopping it")
			stop(mustgather.ErrCanceled)
		}
	})
}
