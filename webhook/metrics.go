package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results of an admission request, the values of the "result" label.
const (
	ResultInjected = "injected"
	ResultSkipped  = "skipped"
	ResultDenied   = "denied"
	ResultError    = "error"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_injector_requests_total",
		Help: "Admission requests handled by the injector, by result: injected, skipped, denied or error.",
	}, []string{"result"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tandem_injector_request_duration_seconds",
		Help: "Time to read, decide, mutate and answer one admission request, by result.",
		// From 50µs (a skip) to 1s; the API server's timeout is a few seconds.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12),
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration)
	// Every result appears from the start, so rates and alerts work before the first denial.
	for _, r := range []string{ResultInjected, ResultSkipped, ResultDenied, ResultError} {
		requestsTotal.WithLabelValues(r)
		requestDuration.WithLabelValues(r)
	}
}

func observe(result string, start time.Time) {
	requestsTotal.WithLabelValues(result).Inc()
	requestDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
}
