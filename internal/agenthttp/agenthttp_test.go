package agenthttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestProbes(t *testing.T) {
	var ready error = errors.New("informers not synced")
	h := Health(Checks{Live: func() error { return nil }, Ready: func() error { return ready }})
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get(t, h, "/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "informers not synced") {
		t.Errorf("/ready = %d %q, want 503 with the reason", code, body)
	}
	ready = nil
	if code, _ := get(t, h, "/ready"); code != http.StatusOK {
		t.Errorf("/ready = %d after becoming ready, want 200", code)
	}
	if code, _ := get(t, h, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the health handler = %d, want 404", code)
	}
}

func registry(t *testing.T) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_test_total", Help: "test"})
	c.Add(3)
	reg.MustRegister(c)
	return reg
}

// parse checks the whole body is valid Prometheus text and returns its families.
func parse(t *testing.T, body string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics are not valid Prometheus text: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range families {
		m := f.GetMetric()[0]
		out[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return out
}

func TestMetricsMergeEnvoyStats(t *testing.T) {
	envoy := func(context.Context) ([]byte, error) {
		return []byte("# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 7\n"), nil
	}
	_, body := get(t, Metrics(registry(t), envoy, slog.New(slog.NewTextHandler(io.Discard, nil))), "/metrics")
	got := parse(t, body)
	if got["tandem_test_total"] != 3 || got["envoy_cluster_upstream_rq_total"] != 7 || got["tandem_agent_envoy_stats_up"] != 1 {
		t.Fatalf("merged metrics = %v", got)
	}
}

func TestMetricsWithoutEnvoy(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	down := func(context.Context) ([]byte, error) { return nil, errors.New("connection refused") }
	code, body := get(t, Metrics(registry(t), down, quiet), "/metrics")
	got := parse(t, body)
	if code != http.StatusOK || got["tandem_test_total"] != 3 || got["tandem_agent_envoy_stats_up"] != 0 {
		t.Fatalf("metrics with Envoy down = %d %v", code, got)
	}
	// Proxyless: no Envoy at all, no Envoy gauge.
	_, body = get(t, Metrics(registry(t), nil, quiet), "/metrics")
	if _, ok := parse(t, body)["tandem_agent_envoy_stats_up"]; ok {
		t.Error("proxyless metrics report an Envoy gauge")
	}
}
