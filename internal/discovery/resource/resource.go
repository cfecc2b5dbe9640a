// Package resource converts between a Kubernetes Service with its
// EndpointSlices, TrafficPolicies and the routes naming it as a parent,
// and the one discovery resource (discoverypb.Service) that carries them. Conversion keeps exactly what
// translation reads, so translating the objects made back from a resource
// gives the same xDS configuration as translating the originals.
package resource

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// TypeURL is the xDS type of the resource.
const TypeURL = "type.googleapis.com/tandem.discovery.v1.Service"

// NodeTypeURL is the xDS type of a Node's zone (discoverypb.Node), named by
// the Node's name.
const NodeTypeURL = "type.googleapis.com/tandem.discovery.v1.Node"

// Name is the resource name of a Service: "<namespace>/<name>".
func Name(namespace, name string) string { return namespace + "/" + name }

// NamespaceName is the subscription name of every Service of a namespace.
func NamespaceName(namespace string) string { return namespace + "/*" }

// FromObjects builds the resource of o.Service from its EndpointSlices,
// the TrafficPolicies targeting it and the routes naming it as a parent.
// Objects of other Services are the caller's mistake and are not checked.
func FromObjects(o Objects) (*pb.Service, error) {
	svc, slcs, policies := o.Service, o.EndpointSlices, o.Policies
	out := &pb.Service{
		Namespace:  svc.Namespace,
		Name:       svc.Name,
		Type:       string(svc.Spec.Type),
		ClusterIp:  svc.Spec.ClusterIP,
		ClusterIps: svc.Spec.ClusterIPs,
	}
	for _, f := range svc.Spec.IPFamilies {
		out.IpFamilies = append(out.IpFamilies, string(f))
	}
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, &pb.ServicePort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol), AppProtocol: p.AppProtocol})
	}
	out.SessionAffinity = string(svc.Spec.SessionAffinity)
	if p := svc.Spec.InternalTrafficPolicy; p != nil {
		out.InternalTrafficPolicy = string(*p)
	}
	if d := svc.Spec.TrafficDistribution; d != nil {
		out.TrafficDistribution = *d
	}
	// An endpoint's node and zone are sent only to Services whose
	// translation reads them: they would otherwise grow every resource.
	wantNode := out.InternalTrafficPolicy == string(corev1.ServiceInternalTrafficPolicyLocal) || out.TrafficDistribution != ""
	wantZone := out.TrafficDistribution != ""

	// Translation takes a Service's slices in name order, and of an address
	// listed twice the first listed wins: merging only into the last group
	// of the same family keeps that order within each family, and addresses
	// of two families never collide.
	sorted := slices.Clone(slcs)
	slices.SortFunc(sorted, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	families := map[discoveryv1.AddressType]bool{}
	last := map[discoveryv1.AddressType]*pb.EndpointGroup{}
	for _, sl := range sorted {
		g := last[sl.AddressType]
		ports := endpointPorts(sl.Ports)
		if g == nil || !slices.EqualFunc(g.Ports, ports, func(a, b *pb.EndpointPort) bool { return proto.Equal(a, b) }) {
			g = &pb.EndpointGroup{AddressType: string(sl.AddressType), Ports: ports}
			last[sl.AddressType] = g
			out.EndpointGroups = append(out.EndpointGroups, g)
		}
		for i := range sl.Endpoints {
			ep := &sl.Endpoints[i]
			c := ep.Conditions
			ready := c.Ready == nil || *c.Ready
			servingTerminating := (c.Serving == nil || *c.Serving) && c.Terminating != nil && *c.Terminating
			if (!ready && !servingTerminating) || len(ep.Addresses) == 0 {
				continue
			}
			e := &pb.Endpoint{Address: ep.Addresses[0], Terminating: !ready}
			if r := ep.TargetRef; r != nil && r.Name != "" {
				e.Target = &pb.ObjectRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
			}
			if ep.NodeName != nil && wantNode {
				e.NodeName = *ep.NodeName
			}
			if ep.Zone != nil && wantZone {
				e.Zone = *ep.Zone
			}
			if h := ep.Hints; h != nil {
				for _, z := range h.ForZones {
					e.HintZones = append(e.HintZones, z.Name)
				}
				for _, n := range h.ForNodes {
					e.HintNodes = append(e.HintNodes, n.Name)
				}
			}
			g.Endpoints = append(g.Endpoints, e)
			families[sl.AddressType] = true
		}
	}
	// Owners only pair the two addresses of a dual-stack pod.
	if !families[discoveryv1.AddressTypeIPv4] || !families[discoveryv1.AddressTypeIPv6] {
		for _, g := range out.EndpointGroups {
			for _, e := range g.Endpoints {
				e.Target = nil
			}
		}
	}

	for _, tp := range policies {
		spec, err := json.Marshal(tp.Spec)
		if err != nil {
			return nil, fmt.Errorf("TrafficPolicy %s/%s: %w", tp.Namespace, tp.Name, err)
		}
		p := &pb.TrafficPolicy{Name: tp.Name, Spec: spec}
		if !tp.CreationTimestamp.IsZero() {
			p.Created = tp.CreationTimestamp.Unix()
		}
		out.Policies = append(out.Policies, p)
	}
	slices.SortFunc(out.Policies, func(a, b *pb.TrafficPolicy) int { return cmp.Compare(a.Name, b.Name) })

	addRoute := func(kind string, meta metav1.ObjectMeta, spec any) error {
		b, err := json.Marshal(spec)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", kind, meta.Namespace, meta.Name, err)
		}
		r := &pb.Route{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Spec: b}
		if !meta.CreationTimestamp.IsZero() {
			r.Created = meta.CreationTimestamp.Unix()
		}
		out.Routes = append(out.Routes, r)
		return nil
	}
	for _, r := range o.HTTPRoutes {
		if err := addRoute(httpRoute, r.ObjectMeta, r.Spec); err != nil {
			return nil, err
		}
	}
	for _, r := range o.GRPCRoutes {
		if err := addRoute(grpcRoute, r.ObjectMeta, r.Spec); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out.Routes, func(a, b *pb.Route) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// The kinds of routes a resource carries.
const (
	httpRoute = "HTTPRoute"
	grpcRoute = "GRPCRoute"
)

func endpointPorts(ps []discoveryv1.EndpointPort) []*pb.EndpointPort {
	out := make([]*pb.EndpointPort, len(ps))
	for i, p := range ps {
		out[i] = &pb.EndpointPort{Name: p.Name, Port: p.Port}
		if p.Protocol != nil {
			out[i].Protocol = proto.String(string(*p.Protocol))
		}
	}
	return out
}

// Objects are the Kubernetes objects a resource stands for.
type Objects struct {
	Service        *corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Policies       []*v1alpha1.TrafficPolicy
	HTTPRoutes     []*gatewayv1.HTTPRoute
	GRPCRoutes     []*gatewayv1.GRPCRoute
}

// AddTo adds the objects to translation inputs. A route with several
// parents is carried by each parent's resource: routes, which holds the
// "kind/namespace/name" of those added already, adds it once.
func (o Objects) AddTo(in *xds.Inputs, routes map[string]bool) {
	in.Services = append(in.Services, o.Service)
	in.EndpointSlices = append(in.EndpointSlices, o.EndpointSlices...)
	in.Policies = append(in.Policies, o.Policies...)
	first := func(kind string, meta metav1.ObjectMeta) bool {
		k := kind + "/" + meta.Namespace + "/" + meta.Name
		if routes[k] {
			return false
		}
		routes[k] = true
		return true
	}
	for _, r := range o.HTTPRoutes {
		if first(httpRoute, r.ObjectMeta) {
			in.HTTPRoutes = append(in.HTTPRoutes, r)
		}
	}
	for _, r := range o.GRPCRoutes {
		if first(grpcRoute, r.ObjectMeta) {
			in.GRPCRoutes = append(in.GRPCRoutes, r)
		}
	}
}

// The conditions of a serving but terminating endpoint, shared by all.
var notReady, serving, terminating = false, true, true

// ToObjects makes the objects translation reads back from a resource: the
// Service, one EndpointSlice per endpoint group (named so that their order
// is the groups' order), and the policies.
func ToObjects(r *pb.Service) (Objects, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceType(r.Type),
			ClusterIP:  r.ClusterIp,
			ClusterIPs: r.ClusterIps,
		},
	}
	for _, f := range r.IpFamilies {
		svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, corev1.IPFamily(f))
	}
	for _, p := range r.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: p.Port, Protocol: corev1.Protocol(p.Protocol), AppProtocol: p.AppProtocol})
	}
	svc.Spec.SessionAffinity = corev1.ServiceAffinity(r.SessionAffinity)
	if r.InternalTrafficPolicy != "" {
		p := corev1.ServiceInternalTrafficPolicy(r.InternalTrafficPolicy)
		svc.Spec.InternalTrafficPolicy = &p
	}
	if r.TrafficDistribution != "" {
		svc.Spec.TrafficDistribution = &r.TrafficDistribution
	}
	out := Objects{Service: svc}
	for i, g := range r.EndpointGroups {
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: r.Namespace,
				// Zero-padded, so that name order is group order.
				Name:   r.Name + "-" + fmt.Sprintf("%06d", i),
				Labels: map[string]string{discoveryv1.LabelServiceName: r.Name},
			},
			AddressType: discoveryv1.AddressType(g.AddressType),
			Ports:       make([]discoveryv1.EndpointPort, len(g.Ports)),
			Endpoints:   make([]discoveryv1.Endpoint, len(g.Endpoints)),
		}
		for j, p := range g.Ports {
			sl.Ports[j] = discoveryv1.EndpointPort{Name: p.Name, Port: p.Port}
			if p.Protocol != nil {
				proto := corev1.Protocol(*p.Protocol)
				sl.Ports[j].Protocol = &proto
			}
		}
		for j, e := range g.Endpoints {
			ep := &sl.Endpoints[j]
			*ep = discoveryv1.Endpoint{Addresses: []string{e.Address}}
			if e.Terminating {
				ep.Conditions = discoveryv1.EndpointConditions{Ready: &notReady, Serving: &serving, Terminating: &terminating}
			}
			if t := e.Target; t != nil {
				ep.TargetRef = &corev1.ObjectReference{Kind: t.Kind, Namespace: t.Namespace, Name: t.Name}
			}
			if e.NodeName != "" {
				ep.NodeName = &e.NodeName
			}
			if e.Zone != "" {
				ep.Zone = &e.Zone
			}
			if len(e.HintZones)+len(e.HintNodes) > 0 {
				ep.Hints = &discoveryv1.EndpointHints{}
				for _, z := range e.HintZones {
					ep.Hints.ForZones = append(ep.Hints.ForZones, discoveryv1.ForZone{Name: z})
				}
				for _, n := range e.HintNodes {
					ep.Hints.ForNodes = append(ep.Hints.ForNodes, discoveryv1.ForNode{Name: n})
				}
			}
		}
		out.EndpointSlices = append(out.EndpointSlices, sl)
	}
	for _, p := range r.Policies {
		tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: p.Name}}
		if p.Created != 0 {
			tp.CreationTimestamp = metav1.NewTime(time.Unix(p.Created, 0))
		}
		if err := json.Unmarshal(p.Spec, &tp.Spec); err != nil {
			return Objects{}, fmt.Errorf("resource %s: TrafficPolicy %s: spec: %w", Name(r.Namespace, r.Name), p.Name, err)
		}
		out.Policies = append(out.Policies, tp)
	}
	for _, rt := range r.Routes {
		meta := metav1.ObjectMeta{Namespace: rt.Namespace, Name: rt.Name}
		if rt.Created != 0 {
			meta.CreationTimestamp = metav1.NewTime(time.Unix(rt.Created, 0))
		}
		var err error
		switch rt.Kind {
		case httpRoute:
			hr := &gatewayv1.HTTPRoute{ObjectMeta: meta}
			err = json.Unmarshal(rt.Spec, &hr.Spec)
			out.HTTPRoutes = append(out.HTTPRoutes, hr)
		case grpcRoute:
			gr := &gatewayv1.GRPCRoute{ObjectMeta: meta}
			err = json.Unmarshal(rt.Spec, &gr.Spec)
			out.GRPCRoutes = append(out.GRPCRoutes, gr)
		default:
			err = fmt.Errorf("kind %q is not HTTPRoute or GRPCRoute", rt.Kind)
		}
		if err != nil {
			return Objects{}, fmt.Errorf("resource %s: %s %s/%s: %w", Name(r.Namespace, r.Name), rt.Kind, rt.Namespace, rt.Name, err)
		}
	}
	return out, nil
}

// Version is a resource's xDS version: a hash of its deterministic
// encoding, the same in every discovery replica and across restarts, so a
// reconnecting agent that holds it is sent nothing.
func Version(r *pb.Service) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return "", err
	}
	return VersionOf(b), nil
}

// VersionOf is Version of an already encoded resource.
func VersionOf(encoded []byte) string {
	h := fnv.New64a()
	h.Write(encoded)
	return strconv.FormatUint(h.Sum64(), 36)
}

// FromInputs builds the resources of every Service in `in`. Of two Services
// with one name the first is used, as translation does; slices, policies
// and routes of Services not in `in` are left out.
func FromInputs(in xds.Inputs) ([]*pb.Service, error) {
	type key struct{ ns, name string }
	slcs := map[key][]*discoveryv1.EndpointSlice{}
	for _, sl := range in.EndpointSlices {
		if sl == nil {
			continue
		}
		if name, ok := sl.Labels[discoveryv1.LabelServiceName]; ok {
			k := key{sl.Namespace, name}
			slcs[k] = append(slcs[k], sl)
		}
	}
	pols := map[key][]*v1alpha1.TrafficPolicy{}
	for _, tp := range in.Policies {
		if tp != nil {
			k := key{tp.Namespace, tp.Spec.TargetRef.Name}
			pols[k] = append(pols[k], tp)
		}
	}
	httpRoutes := map[string][]*gatewayv1.HTTPRoute{}
	for _, r := range in.HTTPRoutes {
		for _, p := range xds.ServiceParents(r.Namespace, r.Spec.ParentRefs) {
			httpRoutes[p] = append(httpRoutes[p], r)
		}
	}
	grpcRoutes := map[string][]*gatewayv1.GRPCRoute{}
	for _, r := range in.GRPCRoutes {
		for _, p := range xds.ServiceParents(r.Namespace, r.Spec.ParentRefs) {
			grpcRoutes[p] = append(grpcRoutes[p], r)
		}
	}
	var out []*pb.Service
	seen := map[key]bool{}
	for _, svc := range in.Services {
		if svc == nil {
			continue
		}
		k := key{svc.Namespace, svc.Name}
		if seen[k] {
			continue
		}
		seen[k] = true
		name := Name(svc.Namespace, svc.Name)
		r, err := FromObjects(Objects{Service: svc, EndpointSlices: slcs[k], Policies: pols[k], HTTPRoutes: httpRoutes[name], GRPCRoutes: grpcRoutes[name]})
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ToInputs makes the translation inputs of a set of resources.
func ToInputs(rs []*pb.Service) (xds.Inputs, error) {
	var in xds.Inputs
	routes := map[string]bool{}
	for _, r := range rs {
		o, err := ToObjects(r)
		if err != nil {
			return xds.Inputs{}, err
		}
		o.AddTo(&in, routes)
	}
	return in, nil
}
