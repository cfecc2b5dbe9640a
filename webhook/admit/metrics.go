package admit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tandem-mesh/tandem/webhook"
)

// Results of an admission request, the values of the "result" label.
const (
	ResultInjected = "injected"
	ResultSkipped  = "skipped"
	ResultDenied   = "denied"
	ResultError    = "error"
)

// Reasons of a skip that the injector never sees: the request is not the
// creation of a pod.
const (
	ReasonNotPod    = "not-pod"
	ReasonNotCreate = "not-create"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_injector_requests_total",
		Help: "Admission requests handled by the injector, by result (injected, skipped, denied or error) and, for skips, the reason.",
	}, []string{"result", "reason"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tandem_injector_request_duration_seconds",
		Help: "Time to read, decide, mutate and answer one admission request, by result.",
		// From 50µs (a skip) to 1s; the API server's timeout is a few seconds.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12),
	}, []string{"result"})
)

// skipReasons are the values of the "reason" label of skips.
func skipReasons() []string {
	out := []string{ReasonNotPod, ReasonNotCreate}
	for _, r := range webhook.Reasons {
		out = append(out, string(r))
	}
	return out
}

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration)
	// Every series appears from the start, so rates and alerts work before the first denial.
	for _, r := range []string{ResultInjected, ResultSkipped, ResultDenied, ResultError} {
		requestDuration.WithLabelValues(r)
		if r != ResultSkipped {
			requestsTotal.WithLabelValues(r, "")
		}
	}
	for _, reason := range skipReasons() {
		requestsTotal.WithLabelValues(ResultSkipped, reason)
	}
}

// outcome is what one request came to, for the metrics.
type outcome struct {
	result, reason string
}

func observe(o outcome, start time.Time) {
	requestsTotal.WithLabelValues(o.result, o.reason).Inc()
	requestDuration.WithLabelValues(o.result).Observe(time.Since(start).Seconds())
}
