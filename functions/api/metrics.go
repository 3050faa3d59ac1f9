package api

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts and times requests by route pattern and status code. A nil
// *metrics instruments nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	deletes  *prometheus.CounterVec
}

// cancels is the counter of DELETE /must-gather/{id} by result, or nil.
func (m *metrics) cancels() *prometheus.CounterVec {
	if m == nil {
		return nil
	}
	return m.deletes
}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_api_http_requests_total",
			Help: "HTTP requests served by the must-gather API, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mustgather_api_http_request_duration_seconds",
			Help:    "Time to serve a request of the must-gather API, by route pattern and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mustgather_api_deletes_total",
			Help: "DELETE /must-gather/{id} by result: canceled (a new gathering ended), cancel_requested (one in progress marked for its runner to stop), deleted (an ended one removed with its archive), conflict (it had ended; nothing changed), precondition_failed.",
		}, []string{"result"}),
	}
	m.requests = register(reg, m.requests)
	m.deletes = register(reg, m.deletes)
	m.duration = register(reg, m.duration)
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that two servers can share one registry.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// instrument wraps h so that its requests are counted and timed under route,
// a fixed pattern and never the raw path, to keep the label set bounded.
// Every request passes through it, so it allocates nothing once each
// status code of the route has been seen: the counter and histogram of a
// code are looked up once and kept.
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	rm := &routeMetrics{m: m, route: route}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusWriters.Get().(*statusWriter)
		*sw = statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.status
		*sw = statusWriter{}
		statusWriters.Put(sw)
		if code == 0 {
			code = http.StatusOK // a handler that wrote nothing
		}
		cm := rm.of(code)
		cm.requests.Inc()
		cm.duration.Observe(time.Since(start).Seconds())
	})
}

// routeMetrics are the metrics of one route, by status code.
type routeMetrics struct {
	m     *metrics
	route string
	codes [600]atomic.Pointer[codeMetrics] // by status code; out of range: 0
}

type codeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (rm *routeMetrics) of(code int) *codeMetrics {
	if code < 100 || code >= len(rm.codes) {
		code = 0
	}
	if cm := rm.codes[code].Load(); cm != nil {
		return cm
	}
	label := strconv.Itoa(code)
	cm := &codeMetrics{
		requests: rm.m.requests.WithLabelValues(rm.route, label),
		duration: rm.m.duration.WithLabelValues(rm.route, label),
	}
	rm.codes[code].Store(cm)
	return cm
}

// statusWriter keeps the status a handler answers with. Unwrap lets
// http.ResponseController reach the connection through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
