package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	rebuilds        prometheus.Counter
	rebuildSeconds  prometheus.Histogram
	endpointUpdates prometheus.Counter
	translateErrors prometheus.Counter
	watchErrors     prometheus.Counter
	synced          prometheus.Gauge
	publishedAt     prometheus.Gauge
	fromDiscovery   prometheus.Gauge
	fallbacks       prometheus.Counter
	discoveryUp     prometheus.Gauge
	discoverySince  prometheus.Gauge
	discoveryBytes  prometheus.Counter
	nodeKnown       prometheus.Gauge
	zoneKnown       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_rebuilds_total",
			Help: "Full translations of the watched objects.",
		}),
		rebuildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_agent_rebuild_duration_seconds",
			Help:    "Time of a full translation and publication.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		endpointUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_endpoint_updates_total",
			Help: "Incremental endpoint updates of one Service after an EndpointSlice change.",
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_translation_errors_total",
			Help: "Objects or resources dropped by translation.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_watch_errors_total",
			Help: "Lists and watches of the API server that failed and are retried with backoff.",
		}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_configuration_published",
			Help: "1 once a first configuration is published, from discovery or the API server.",
		}),
		publishedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_configuration_published_at_seconds",
			Help: "Unix time at which the first configuration was published.",
		}),
		fromDiscovery: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_source_discovery",
			Help: "1 while the configuration comes from discovery, 0 while from the API server.",
		}),
		discoveryUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_discovery_connected",
			Help: "1 while a discovery stream is open and answered.",
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_discovery_fallbacks_total",
			Help: "Times discovery was unreachable long enough for the agent to watch the API server.",
		}),
		discoverySince: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_discovery_connected_since_seconds",
			Help: "Unix time at which the current discovery stream was first answered.",
		}),
		discoveryBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_discovery_received_bytes_total",
			Help: "Encoded size of the discovery responses received.",
		}),
		nodeKnown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_node_known",
			Help: "1 when the agent knows its pod's node; 0: Services with internalTrafficPolicy Local get no endpoints.",
		}),
		zoneKnown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_zone_known",
			Help: "1 when the agent knows its pod's zone; 0: endpoints in the same zone are not preferred.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rebuilds, m.rebuildSeconds, m.endpointUpdates, m.translateErrors, m.watchErrors, m.synced, m.publishedAt, m.fromDiscovery, m.fallbacks, m.discoveryUp, m.discoverySince, m.discoveryBytes, m.nodeKnown, m.zoneKnown} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
