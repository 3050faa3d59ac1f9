package notifier

import "github.com/prometheus/client_golang/prometheus"

// metrics of the event streams, in the project's one namespace.
type metrics struct {
	clients prometheus.Gauge
	sent    prometheus.Counter
	dropped prometheus.Counter
	refused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mustgather_notifier_clients",
			Help: "Event streams open now.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_notifier_events_sent_total",
			Help: "Events written to event streams (one per stream that got it).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_notifier_clients_dropped_total",
			Help: "Event streams ended because their client read too slowly: its queue of events was full, or a write to it timed out.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mustgather_notifier_clients_refused_total",
			Help: "Event streams refused (503) because the process served its maximum of streams.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.sent, m.dropped, m.refused)
	}
	return m
}
