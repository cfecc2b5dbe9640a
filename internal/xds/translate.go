// Package xds translates Kubernetes Services, EndpointSlices,
// TrafficPolicies and Gateway API mesh routes (HTTPRoute, GRPCRoute) into
// the xDS resources the agent serves: first into a small
// intermediate form (model.go), then, one small builder per Envoy resource,
// into listeners, route configurations, clusters and load assignments. All
// functions are pure; the serving layer owns caching and versions.
//
// Two clients are served. Sidecar mode feeds the pod's Envoy: one outbound
// listener on the capture port with a filter chain per ClusterIP:port, and a
// passthrough for everything else. Proxyless mode feeds gRPC's own xDS client:
// one API listener per Service port, named as the client dials it.
package xds

import (
	"cmp"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Translate turns the inputs into the resources for one xDS client. Objects
// that cannot be translated are left out, each reported by an *ObjectError;
// everything else is still translated. A Service port one of whose
// resources fails validation (a bug, never expected) is left out whole, so
// that what remains is consistent: every route configuration and load
// assignment referenced is there, and nothing else.
func Translate(in Inputs, mode Mode) (*Resources, []error) {
	m, errs := buildModel(in, mode)
	out := &Resources{}
	routes := map[*servicePort]types.Resource{}
	for _, p := range m.ports() {
		own := []types.Resource{cluster(p, mode)}
		if cla := loadAssignment(p, mode); cla != nil {
			own = append(own, cla)
		}
		if mode == Proxyless {
			own = append(own, apiListener(p))
		} else {
			routes[p] = routeConfiguration(p, mode)
			own = append(own, routes[p])
		}
		if err := validateEach(own); err != nil {
			errs = append(errs, err)
			p.dropped = true
			continue
		}
		for _, r := range own {
			switch r.(type) {
			case *clusterv3.Cluster:
				out.Clusters = append(out.Clusters, r)
			case *endpointv3.ClusterLoadAssignment:
				out.Endpoints = append(out.Endpoints, r)
			case *listenerv3.Listener:
				out.Listeners = append(out.Listeners, r)
			}
		}
	}
	if mode == Proxyless && unresolvedUsed(m) {
		// Requests to a backend that does not resolve fail UNAVAILABLE:
		// gRPC's answer for a cluster without endpoints.
		out.Clusters = append(out.Clusters, unresolvedBackendCluster())
		out.Endpoints = append(out.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: unresolvedCluster})
	}
	if mode == Sidecar {
		l, httpPorts, chainErrs := outboundListener(m)
		errs = append(errs, chainErrs...)
		if err := Validate(l); err != nil {
			errs = append(errs, err)
		} else {
			out.Listeners = append(out.Listeners, l)
			// Only route configurations a filter chain uses: go-control-plane's
			// consistency check refuses a snapshot with others.
			for _, p := range httpPorts {
				out.Routes = append(out.Routes, routes[p])
			}
		}
		pt := passthroughCluster()
		if err := Validate(pt); err != nil {
			errs = append(errs, err)
		} else {
			out.Clusters = append(out.Clusters, pt)
		}
	}
	for _, list := range [][]types.Resource{out.Listeners, out.Routes, out.Clusters, out.Endpoints} {
		slices.SortFunc(list, func(a, b types.Resource) int { return cmp.Compare(resourceName(a), resourceName(b)) })
	}
	return out, errs
}

// unresolvedUsed reports whether a translated port's routes send some
// requests to unresolvedCluster.
func unresolvedUsed(m *model) bool {
	for _, p := range m.ports() {
		if !p.dropped && p.routes != nil && p.routes.unresolved {
			return true
		}
	}
	return false
}

func validateEach(rs []types.Resource) error {
	for _, r := range rs {
		if err := Validate(r); err != nil {
			return err
		}
	}
	return nil
}

// ServiceEndpoints returns the load assignments of one Service, one per
// TCP port with an EDS cluster, sorted by cluster name, reading only the
// given slices that belong to the Service. They equal what Translate returns
// for the Service, so an EndpointSlice change can be pushed without a full
// translation, unless EndpointsChangeListeners says the Service also needs
// one. local is where the client runs, as Inputs.Local.
func ServiceEndpoints(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, local Locality, mode Mode) []*endpointv3.ClusterLoadAssignment {
	if svc == nil {
		return nil
	}
	s, _ := buildService(svc, mode) // its errors are Translate's to report
	if s == nil {
		return nil
	}
	own := make([]*discoveryv1.EndpointSlice, 0, len(endpointSlices))
	for _, sl := range endpointSlices {
		if sl != nil && sliceOwner(sl) == (objectKey{svc.Namespace, svc.Name}) {
			own = append(own, sl)
		}
	}
	sortByName(own)
	var out []*endpointv3.ClusterLoadAssignment
	for _, p := range s.ports {
		p.endpoints = portEndpoints(s, p, own, local, mode)
		if cla := loadAssignment(p, mode); cla != nil {
			out = append(out, cla)
		}
	}
	slices.SortFunc(out, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
	return out
}

// EndpointsChangeListeners reports whether a change of the Service's
// endpoints changes more than its load assignments: true for a headless
// Service in sidecar mode, whose filter chains match its endpoint addresses,
// so its EndpointSlice changes need a full Translate.
func EndpointsChangeListeners(svc *corev1.Service, mode Mode) bool {
	return mode == Sidecar && svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP == corev1.ClusterIPNone
}
