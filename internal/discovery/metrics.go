package discovery

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
)

var (
	descStreams = prometheus.NewDesc("tandem_discovery_streams",
		"Agents' streams open on this replica.", nil, nil)
	descAgents = prometheus.NewDesc("tandem_discovery_agents",
		"Agents connected to this replica, by mode (sidecar, proxyless) and the source they report (discovery, api-server, none; unknown before their first report).", []string{"mode", "source"}, nil)
	descPushes = prometheus.NewDesc("tandem_discovery_pushes_total",
		"Responses sent to agents.", nil, nil)
	descSentBytes = prometheus.NewDesc("tandem_discovery_sent_bytes_total",
		"Encoded size of the responses sent to agents.", nil, nil)
	descRejections = prometheus.NewDesc("tandem_discovery_rejections_total",
		"Responses an agent refused (NACK).", nil, nil)
	descProxyRejecting = prometheus.NewDesc("tandem_discovery_proxies_rejecting",
		"Connected agents whose proxy (Envoy or the proxyless app) refuses the latest configuration of a type, by type, as the agents report it.", []string{"type"}, nil)
	descRefused = prometheus.NewDesc("tandem_discovery_streams_refused_total",
		"Streams refused before anything was served, by gRPC code (Unauthenticated: bad token; PermissionDenied: namespace not injected; Unavailable: the token could not be reviewed).", []string{"code"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descAgents, descPushes, descSentBytes, descRejections, descProxyRejecting, descRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the live records.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(s.Streams()))
	ch <- prometheus.MustNewConstMetric(descSentBytes, prometheus.CounterValue, float64(s.SentBytes()))
	type key struct{ mode, source string }
	agents := map[key]int{}
	rejecting := map[string]int{}
	a := s.agents
	a.mu.Lock()
	pushes, rejections := a.pushes, a.rejections
	for _, rec := range a.streams {
		k := key{"unknown", "unknown"}
		if r := a.agentReport(rec); r != nil {
			k = key{r.Mode, r.Source}
			types := map[string]bool{}
			for _, p := range r.Proxies {
				for _, e := range p.Exchanges {
					if e.State() == agentstatus.StateRejected {
						types[e.Type] = true
					}
				}
			}
			for t := range types {
				rejecting[t]++
			}
		}
		agents[k]++
	}
	a.mu.Unlock()
	for k, n := range agents {
		ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(n), k.mode, k.source)
	}
	for t, n := range rejecting {
		ch <- prometheus.MustNewConstMetric(descProxyRejecting, prometheus.GaugeValue, float64(n), t)
	}
	ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(pushes))
	ch <- prometheus.MustNewConstMetric(descRejections, prometheus.CounterValue, float64(rejections))
	s.refusalsMu.Lock()
	defer s.refusalsMu.Unlock()
	for c, n := range s.refusals {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(n), c.String())
	}
}
