package xds

import (
	"fmt"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// The package's types and resource names, which every step of the
// translation (model, policy, the builders, validate) shares.

// ClusterDomain is the DNS domain of Services that host names are built in.
const ClusterDomain = "cluster.local"

// Inputs are what a translation reads: the Kubernetes objects, and where
// the client the resources are for runs. Nothing is modified.
type Inputs struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Policies       []*v1alpha1.TrafficPolicy
	// HTTPRoutes and GRPCRoutes route the traffic to the Services they
	// name as parents (Gateway API mesh routes); other parents are ignored.
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	// Local is where the client runs: its node and zone, which
	// internalTrafficPolicy Local and topology-aware routing read, and its
	// namespace, whose consumer routes apply to it.
	Local Locality
}

// Locality is where a client runs; an empty field is unknown.
type Locality struct {
	// Node is the name of the client's Node.
	Node string
	// Zone is its Node's topology.kubernetes.io/zone label.
	Zone string
	// Namespace is the client pod's namespace. Unknown, only the routes of
	// each Service's own namespace (producer routes) apply.
	Namespace string
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
	Kind      string // Service, EndpointSlice, TrafficPolicy, HTTPRoute, GRPCRoute or an xDS type
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
