package main

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// expirer is an archive store that can have the storage itself remove old
// archives, as S3 does with a bucket lifecycle rule.
type expirer interface {
	Expire(ctx context.Context, prefix string, days int) error
}

// lifecycleTimeout bounds setting the archive store's lifecycle rule.
const lifecycleTimeout = 30 * time.Second

// startRetention sets the archive store's lifecycle rule, if it has one,
// and deletes the gatherings that outlive RETENTION every
// RETENTION_INTERVAL, in the runner's group.
func startRetention(cfg config, d *deps, g *group, r *runner.Runner, log *slog.Logger) {
	g.wg.Go(func() {
		if e, ok := d.archives.(expirer); ok {
			ctx, cancel := context.WithTimeout(g.ctx, lifecycleTimeout)
			days := lifecycleDays(cfg.Runner.Retention)
			if err := e.Expire(ctx, mustgather.ArchivePrefix, days); err != nil {
				log.Warn("archive store lifecycle rule not set; the runner's retention still deletes old archives", "err", err)
			} else {
				log.Info("archive store lifecycle rule set", "prefix", mustgather.ArchivePrefix, "days", days)
			}
			cancel()
		}
		r.RunExpiry(g.ctx)
	})
}

// lifecycleDays is how many days after it was written the storage removes
// an archive: a day more than the retention, so that the runner, which
// also deletes the record, normally does it first; 0 (no rule) when the
// retention is for ever.
func lifecycleDays(retention time.Duration) int {
	if retention <= 0 {
		return 0
	}
	return int(math.Ceil(retention.Hours()/24)) + 1
}
