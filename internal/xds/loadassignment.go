package xds

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loadAssignment lists the endpoints of one Service port's EDS cluster;
// nil when the cluster is not EDS (a headless Service's sidecar). The
// endpoints of one priority share one locality of weight 1: gRPC ignores a
// locality without weight, and splitting by zone would give each zone an
// equal share however many endpoints it has. Priorities are numbered from 0
// without gaps, as gRPC requires. A port without endpoints gets an
// assignment without any, so clients stop using the old ones.
func loadAssignment(p *servicePort, mode Mode) *endpointv3.ClusterLoadAssignment {
	if mode == Sidecar && p.svc.headless {
		return nil
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: p.clusterName()}
	if len(p.endpoints) == 0 {
		return cla
	}
	// One allocation per message type, not per endpoint: this is the path
	// every endpoint change takes.
	n := len(p.endpoints)
	var (
		lbEndpoints = make([]*endpointv3.LbEndpoint, n)
		lbs         = make([]endpointv3.LbEndpoint, n)
		hosts       = make([]endpointv3.LbEndpoint_Endpoint, n)
		eps         = make([]endpointv3.Endpoint, n)
	)
	primary := make([]netip.AddrPort, n)
	for i, e := range p.endpoints {
		primary[i] = e.addr
	}
	addrs := socketAddresses(primary)
	for i, e := range p.endpoints {
		eps[i].Address = addrs[i]
		for _, x := range e.extra {
			eps[i].AdditionalAddresses = append(eps[i].AdditionalAddresses, &endpointv3.Endpoint_AdditionalAddress{Address: socketAddress(x)})
		}
		hosts[i].Endpoint = &eps[i]
		lbs[i].HostIdentifier = &hosts[i]
		lbEndpoints[i] = &lbs[i]
	}
	// The endpoints are sorted by priority: each run of one priority is a
	// locality.
	for start := 0; start < n; {
		end := start + 1
		for end < n && p.endpoints[end].priority == p.endpoints[start].priority {
			end++
		}
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			Priority:            p.endpoints[start].priority,
			LbEndpoints:         lbEndpoints[start:end:end],
		})
		start = end
	}
	return cla
}
