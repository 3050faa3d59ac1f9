package sinks

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a delivery, the outcome label of
// mustgather_notifier_sink_deliveries_total.
const (
	outcomeDelivered  = "delivered"
	outcomeDeadLetter = "dead_letter"
	// outcomeDuplicate: the sink had the event already (a redelivered or
	// republished event), so it was not sent again.
	outcomeDuplicate = "duplicate"
)

// Results of one attempt, the result label of
// mustgather_notifier_sink_attempts_total.
const (
	resultOK        = "ok"
	resultRetryable = "retryable" // network error, timeout, 5xx, 408, 429
	resultRejected  = "rejected"  // any other status: not retried
)

type metrics struct {
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	delay      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_notifier_sink_deliveries_total",
			Help: "Final status events handled per subscriber, by sink host and outcome: delivered, dead_letter (failed after the retry limit or refused; see the dead-letter stream), or duplicate (delivered before, not sent again).",
		}, []string{"sink", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_notifier_sink_attempts_total",
			Help: "HTTP attempts to deliver an event to a subscriber, by sink host and result: ok, retryable (network error, timeout, 5xx, 408, 429) or rejected (another status, not retried).",
		}, []string{"sink", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mustgather_notifier_sink_attempt_duration_seconds",
			Help:    "Duration of one HTTP attempt to a subscriber, by sink host.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 13),
		}, []string{"sink"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mustgather_notifier_sink_delivery_delay_seconds",
			Help:    "Time from a gathering's final status to its delivery to a subscriber, retries included, by sink host.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempts, m.latency, m.delay)
	}
	return m
}
