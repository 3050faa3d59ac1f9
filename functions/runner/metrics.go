package runner

import "github.com/prometheus/client_golang/prometheus"

// Metric names follow Prometheus conventions in the project's one
// namespace: mustgather_<function or part>_<what>, _total on counters, base
// units (seconds, bytes).
type metrics struct {
	running       prometheus.Gauge
	finished      *prometheus.CounterVec
	duration      prometheus.Histogram
	archiveBytes  prometheus.Counter
	reaperActions *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	expired       prometheus.Counter
	canceled      prometheus.Counter
	waiting       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mustgather_runner_gatherings_running",
			Help: "Gatherings this runner is running now.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_runner_gatherings_finished_total",
			Help: "Gatherings this runner ran to an end, by result: completed, error, superseded (the reaper had ended the gathering first, so this run's result was dropped), or taken-over (another runner took the gathering over after this run's lease lapsed, so this run stopped and recorded nothing).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mustgather_runner_gathering_duration_seconds",
			Help:    "Time from claim to recorded final status of the gatherings this runner finished.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		archiveBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_runner_archive_bytes_total",
			Help: "Bytes of archives this runner stored.",
		}),
		reaperActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_reaper_actions_total",
			Help: "What the reaper did to unfinished gatherings, by action: requeued (a new requested event published), failed, reattached (a gathering whose runner died carried on by this runner), restarted (one whose runner died before it started any of it, started by this runner), or announced (a recorded final status published again).",
		}, []string{"action"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_runner_requested_dropped_total",
			Help: "Requested events the runner dropped without running anything, by reason: unknown (no record has the event's id) or mismatch (the event's data disagrees with the stored record).",
		}, []string{"reason"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_retention_deleted_total",
			Help: "Ended gatherings this runner deleted, with their archives, after RETENTION.",
		}),
		canceled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_runner_gatherings_canceled_total",
			Help: "Gatherings in progress that this runner stopped because they were canceled.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mustgather_runner_gatherings_waiting",
			Help: "Gatherings this runner holds that wait for a slot under RUNNER_MAX_RUNNING.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.running, m.finished, m.duration, m.archiveBytes, m.reaperActions, m.dropped, m.expired, m.canceled, m.waiting)
	}
	return m
}
