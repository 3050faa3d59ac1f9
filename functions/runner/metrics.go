package runner

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	running      prometheus.Gauge
	finished     *prometheus.CounterVec
	duration     prometheus.Histogram
	archiveBytes prometheus.Counter
	reaped       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mustgather_runner_gatherings_running", Help: "Gatherings this runner is running now.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_runner_gatherings_finished_total", Help: "Gatherings this runner finished, by final status.",
		}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mustgather_runner_gathering_duration_seconds", Help: "Time from claim to final status.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		archiveBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_runner_archive_bytes_total", Help: "Bytes of archives stored.",
		}),
		reaped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_runner_reaped_total", Help: "Gatherings the reaper requeued or failed.",
		}, []string{"action"}),
	}
	if reg != nil {
		reg.MustRegister(m.running, m.finished, m.duration, m.archiveBytes, m.reaped)
	}
	return m
}
