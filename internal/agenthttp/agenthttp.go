// Package agenthttp serves the agent's HTTP endpoints: the liveness and
// readiness probes, Prometheus metrics with Envoy's own statistics
// appended so one scrape of the pod covers both, and, on loopback only,
// the agent's report and the configuration it serves.
package agenthttp

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
)

// Checks answer the probes: nil means healthy, an error says why not.
type Checks struct {
	Live  func() error
	Ready func() error
}

// Health serves /healthz (Checks.Live) and /ready (Checks.Ready).
func Health(c Checks) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", probe(c.Live))
	mux.Handle("GET /ready", probe(c.Ready))
	return mux
}

func probe(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(err.Error() + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
}

// StatsFunc fetches Envoy's statistics in the Prometheus text format.
type StatsFunc func(context.Context) ([]byte, error)

// envoyStatsTimeout keeps a slow Envoy from stalling the scrape.
const envoyStatsTimeout = 2 * time.Second

// Metrics serves /metrics: the families of g, then, when envoy is set and
// answers, Envoy's statistics. tandem_agent_envoy_stats_up tells whether
// Envoy's part is present.
func Metrics(g prometheus.Gatherer, envoy StatsFunc, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var envoyStats []byte
		gatherers := prometheus.Gatherers{g}
		if envoy != nil {
			ctx, cancel := context.WithTimeout(r.Context(), envoyStatsTimeout)
			stats, err := envoy(ctx)
			cancel()
			up := 1.0
			if err != nil {
				up = 0
				log.Debug("Envoy statistics unavailable; serving the agent's only", "error", err)
			} else {
				envoyStats = stats
			}
			gatherers = append(gatherers, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
				return []*dto.MetricFamily{{
					Name:   proto.String("tandem_agent_envoy_stats_up"),
					Help:   proto.String("1 when Envoy's statistics were fetched for this scrape."),
					Type:   dto.MetricType_GAUGE.Enum(),
					Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(up)}}},
				}}, nil
			}))
		}
		families, err := gatherers.Gather()
		if err != nil {
			// Gather returns what it could alongside the error; serve that.
			log.Warn("gathering metrics", "error", err)
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, f := range families {
			if err := enc.Encode(f); err != nil {
				log.Warn("encoding metrics", "family", f.GetName(), "error", err)
				return
			}
		}
		if len(envoyStats) > 0 {
			w.Write(envoyStats)
		}
	})
	return mux
}

// ConfigFunc returns the served configuration of the given kinds (all when
// none) as JSON, or an error naming a kind it does not know.
type ConfigFunc func(kinds []string) ([]byte, error)

// Debug serves the agent's report (agentstatus.StatusPath) and the
// configuration it serves (agentstatus.ConfigPath). Both reveal
// configuration: the agent binds them to loopback only, where the API
// server's port-forward reaches them with the caller's own credentials.
func Debug(status func() agentstatus.Agent, config ConfigFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentstatus.StatusPath, func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.MarshalIndent(status(), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET "+agentstatus.ConfigPath, func(w http.ResponseWriter, r *http.Request) {
		var kinds []string
		for _, k := range r.URL.Query()["kind"] {
			kinds = append(kinds, strings.Split(k, ",")...)
		}
		b, err := config(kinds)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	return mux
}
