package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loadAssignment lists the ready endpoints of one Service port's EDS
// cluster; nil when the cluster is not EDS (a headless Service's sidecar).
// All endpoints share one locality of weight 1: gRPC ignores a locality
// without weight, and splitting by zone would give each zone an equal share
// however many endpoints it has. A port without ready endpoints gets an
// assignment without any, so clients stop using the old ones.
func loadAssignment(p *servicePort, mode Mode) *endpointv3.ClusterLoadAssignment {
	if mode == Sidecar && p.svc.headless {
		return nil
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: p.clusterName()}
	if len(p.endpoints) == 0 {
		return cla
	}
	lbEndpoints := make([]*endpointv3.LbEndpoint, len(p.endpoints))
	for i, e := range p.endpoints {
		ep := &endpointv3.Endpoint{Address: socketAddress(e.addr)}
		for _, x := range e.extra {
			ep.AdditionalAddresses = append(ep.AdditionalAddresses, &endpointv3.Endpoint_AdditionalAddress{Address: socketAddress(x)})
		}
		lbEndpoints[i] = &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: ep}}
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{},
		LoadBalancingWeight: wrapperspb.UInt32(1),
		LbEndpoints:         lbEndpoints,
	}}
	return cla
}
