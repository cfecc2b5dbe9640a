package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descClients = prometheus.NewDesc("tandem_xds_connected_clients",
		"xDS streams currently open.", nil, nil)
	descPushes = prometheus.NewDesc("tandem_xds_pushes_total",
		"xDS responses sent, by resource type.", []string{"type"}, nil)
	descACKs = prometheus.NewDesc("tandem_xds_acks_total",
		"xDS responses accepted by a client, by resource type.", []string{"type"}, nil)
	descNACKs = prometheus.NewDesc("tandem_xds_nacks_total",
		"xDS responses rejected by a client, by resource type.", []string{"type"}, nil)
	descRejected = prometheus.NewDesc("tandem_xds_rejected_resources_total",
		"Resources that failed validation and were not published, by resource type.", []string{"type"}, nil)
	descUpdates = prometheus.NewDesc("tandem_xds_resource_updates_total",
		"Resources added, changed or removed in the served configuration, by resource type.", []string{"type"}, nil)
	descResources = prometheus.NewDesc("tandem_xds_resources",
		"Resources served, by resource type.", []string{"type"}, nil)
	descEndpoints = prometheus.NewDesc("tandem_xds_cluster_endpoints",
		"Endpoints served per cluster.", []string{"cluster"}, nil)
)

// Stats is a point-in-time copy of the server's counters; maps are keyed
// by type name (Listener, Route, Cluster, Endpoint).
type Stats struct {
	Clients   int
	Pushes    map[string]uint64
	ACKs      map[string]uint64
	NACKs     map[string]uint64
	Rejected  map[string]uint64
	Updates   map[string]uint64
	Resources map[string]int
	// Endpoints counts the endpoints of each served cluster.
	Endpoints map[string]int
	// LastNACK is the type and message of the latest NACK.
	LastNACK string
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Rejected:  map[string]uint64{},
		Updates:   map[string]uint64{},
		Resources: map[string]int{},
		Endpoints: map[string]int{},
	}
	s.mu.Lock()
	for typeURL, name := range typeNames {
		st.Rejected[name] = s.rejected[typeURL]
		st.Updates[name] = s.updates[typeURL]
		st.Resources[name] = len(s.published[typeURL])
	}
	for k, v := range s.endpoints {
		st.Endpoints[k] = v
	}
	s.mu.Unlock()

	t := s.tracker
	t.mu.Lock()
	st.Clients = len(t.streams)
	st.Pushes, st.ACKs, st.NACKs = copyCounts(t.pushes), copyCounts(t.acks), copyCounts(t.nacks)
	st.LastNACK = t.lastNACK
	t.mu.Unlock()
	return st
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(typeNames))
	for _, name := range typeNames {
		out[name] = m[name]
	}
	return out
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descPushes, descACKs, descNACKs, descRejected, descUpdates, descResources, descEndpoints} {
		ch <- d
	}
}

// Collect implements prometheus.Collector, reading the live counters so
// the metrics and Stats never disagree.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(st.Clients))
	for _, name := range typeNames {
		ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(st.Pushes[name]), name)
		ch <- prometheus.MustNewConstMetric(descACKs, prometheus.CounterValue, float64(st.ACKs[name]), name)
		ch <- prometheus.MustNewConstMetric(descNACKs, prometheus.CounterValue, float64(st.NACKs[name]), name)
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.Rejected[name]), name)
		ch <- prometheus.MustNewConstMetric(descUpdates, prometheus.CounterValue, float64(st.Updates[name]), name)
		ch <- prometheus.MustNewConstMetric(descResources, prometheus.GaugeValue, float64(st.Resources[name]), name)
	}
	for cluster, n := range st.Endpoints {
		ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(n), cluster)
	}
}
