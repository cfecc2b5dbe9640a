// Package xds translates Kubernetes Services, EndpointSlices and
// TrafficPolicies into the xDS resources the agent serves: first into a small
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
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// ClusterDomain is the DNS domain of Services that host names are built in.
const ClusterDomain = "cluster.local"

// Inputs are the Kubernetes objects a translation reads. Nothing is modified.
type Inputs struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Policies       []*v1alpha1.TrafficPolicy
}

// Mode selects the xDS client the resources are for.
type Mode int

const (
	// Sidecar is an Envoy that receives the pod's redirected outbound traffic.
	Sidecar Mode = iota
	// Proxyless is a gRPC application that dials xds:///<host>:<port> itself.
	Proxyless
)

func (m Mode) String() string {
	if m == Proxyless {
		return "proxyless"
	}
	return "sidecar"
}

// Resources is the result of a translation. Each slice is sorted by resource
// name and every resource has passed Validate. Resources are shared, not
// copied: callers must not modify them.
type Resources struct {
	Listeners []types.Resource // *listenerv3.Listener
	Routes    []types.Resource // *routev3.RouteConfiguration (sidecar mode; proxyless listeners carry theirs)
	Clusters  []types.Resource // *clusterv3.Cluster
	Endpoints []types.Resource // *endpointv3.ClusterLoadAssignment, one per EDS cluster
}

// ObjectError reports one Kubernetes object, or part of one, that was left
// out of a translation (or, for a policy, not applied), and why. It never
// stops the rest of the translation.
type ObjectError struct {
	Kind      string // Service, EndpointSlice, TrafficPolicy or an xDS type
	Namespace string
	Name      string
	Err       error
}

func (e *ObjectError) Error() string {
	if e.Namespace == "" { // an xDS resource, whose names have spaces and bars
		return fmt.Sprintf("%s %q: %v", e.Kind, e.Name, e.Err)
	}
	return fmt.Sprintf("%s %s/%s: %v", e.Kind, e.Namespace, e.Name, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// ServiceHost is the DNS name and port of a Service port,
// "<service>.<namespace>.svc.cluster.local:<port>": the name of its route
// configuration in sidecar mode, and of its API listener in proxyless mode
// (the name gRPC asks for when dialing
// xds:///<service>.<namespace>.svc.cluster.local:<port>).
func ServiceHost(namespace, service string, port int32) string {
	return fmt.Sprintf("%s:%d", hostName(namespace, service), port)
}

// ServiceOfHost is the inverse of ServiceHost: the namespace and name of
// the Service a host ("<service>.<namespace>.svc.cluster.local:<port>")
// names; ok is false for any other form.
func ServiceOfHost(host string) (namespace, service string, ok bool) {
	h, port, found := strings.Cut(host, ":")
	if !found || port == "" {
		return "", "", false
	}
	rest, found := strings.CutSuffix(h, ".svc."+ClusterDomain)
	if !found {
		return "", "", false
	}
	service, namespace, found = strings.Cut(rest, ".")
	if !found || service == "" || namespace == "" || strings.Contains(namespace, ".") {
		return "", "", false
	}
	return namespace, service, true
}

// ClusterName is the cluster of one Service port,
// "outbound|<port>||<service>.<namespace>.svc.cluster.local"; for an EDS
// cluster also the name of its ClusterLoadAssignment.
func ClusterName(namespace, service string, port int32) string {
	return fmt.Sprintf("outbound|%d||%s", port, hostName(namespace, service))
}

func hostName(namespace, service string) string {
	return service + "." + namespace + ".svc." + ClusterDomain
}

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
// one.
func ServiceEndpoints(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, mode Mode) []*endpointv3.ClusterLoadAssignment {
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
		p.endpoints = readyEndpoints(s, p, own)
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
