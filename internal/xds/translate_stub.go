// Package xds turns Kubernetes Services, EndpointSlices and TrafficPolicies
// into the Envoy (or proxyless gRPC) resources the agent serves.
//
// This file is a minimal translation: every Service port is treated as a
// gRPC port with one EDS cluster of its ready endpoints, round robin, and
// TrafficPolicies are not applied.
package xds

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Inputs are the Kubernetes objects one translation reads.
type Inputs struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Policies       []*v1alpha1.TrafficPolicy
}

// Mode selects the xDS client the resources are for.
type Mode int

const (
	// Sidecar is Envoy capturing outbound traffic on its 15001 listener.
	Sidecar Mode = iota
	// Proxyless is a gRPC application dialing xds:/// targets.
	Proxyless
)

// Resources are the xDS resources of one translation, each slice sorted by
// resource name; every resource has passed Validate.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
}

// ClusterName is the EDS cluster name of one Service port.
func ClusterName(namespace, service string, port int32) string {
	return "outbound|" + strconv.Itoa(int(port)) + "||" + service + "." + namespace + ".svc.cluster.local"
}

// Validate runs the proto's ValidateAll and names the resource on failure.
func Validate(r types.Resource) error {
	name := cachev3.GetResourceName(r)
	kind := string(proto.MessageName(r).Name())
	v, ok := r.(interface{ ValidateAll() error })
	if !ok {
		return fmt.Errorf("%s %q: no validation rules for this type", kind, name)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%s %q: %w", kind, name, err)
	}
	return nil
}

// Translate builds the resources for every valid object in.
func Translate(in Inputs, mode Mode) (*Resources, []error) {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range in.EndpointSlices {
		key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		bySvc[key] = append(bySvc[key], s)
	}
	out := &Resources{}
	var errs []error
	var chains []*listenerv3.FilterChain
	add := func(dst *[]types.Resource, r types.Resource) {
		if err := Validate(r); err != nil {
			errs = append(errs, err)
			return
		}
		*dst = append(*dst, r)
	}
	for _, svc := range in.Services {
		for _, cla := range ServiceEndpoints(svc, bySvc[svc.Namespace+"/"+svc.Name], mode) {
			add(&out.Endpoints, cla)
		}
		for _, p := range svc.Spec.Ports {
			name := ClusterName(svc.Namespace, svc.Name, p.Port)
			add(&out.Clusters, edsCluster(name))
			if mode == Proxyless {
				l, err := apiListener(fmt.Sprintf("%s.%s.svc.cluster.local:%d", svc.Name, svc.Namespace, p.Port), name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				add(&out.Listeners, l)
				continue
			}
			if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
				fc, err := httpChain(ip, uint32(p.Port), name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				chains = append(chains, fc)
			}
		}
	}
	if mode == Sidecar {
		add(&out.Clusters, &clusterv3.Cluster{
			Name:                 wellknown.PassthroughClusterName,
			ConnectTimeout:       durationpb.New(5 * time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		})
		l, err := outboundListener(chains)
		if err != nil {
			errs = append(errs, err)
		} else {
			add(&out.Listeners, l)
		}
	}
	for _, rs := range [][]types.Resource{out.Listeners, out.Routes, out.Clusters, out.Endpoints} {
		sort.Slice(rs, func(i, j int) bool { return cachev3.GetResourceName(rs[i]) < cachev3.GetResourceName(rs[j]) })
	}
	return out, errs
}

// ServiceEndpoints returns one ClusterLoadAssignment per port of svc with
// the ready endpoints of its slices, ports matched by name, duplicates removed.
func ServiceEndpoints(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, _ Mode) []*endpointv3.ClusterLoadAssignment {
	var out []*endpointv3.ClusterLoadAssignment
	for _, p := range svc.Spec.Ports {
		seen := map[string]bool{}
		var lbs []*endpointv3.LbEndpoint
		for _, s := range eps {
			if s.AddressType == discoveryv1.AddressTypeFQDN || s.Labels[discoveryv1.LabelServiceName] != svc.Name || s.Namespace != svc.Namespace {
				continue
			}
			for _, sp := range s.Ports {
				if sp.Port == nil || ptrStr(sp.Name) != p.Name {
					continue
				}
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && !*e.Conditions.Ready {
						continue
					}
					for _, a := range e.Addresses {
						key := epKey(a, *sp.Port)
						if seen[key] {
							continue
						}
						seen[key] = true
						lbs = append(lbs, lbEndpoint(a, uint32(*sp.Port)))
					}
				}
			}
		}
		slices.SortFunc(lbs, func(a, b *endpointv3.LbEndpoint) int {
			sa, sb := a.GetEndpoint().GetAddress().GetSocketAddress(), b.GetEndpoint().GetAddress().GetSocketAddress()
			return cmp.Compare(epKey(sa.GetAddress(), int32(sa.GetPortValue())), epKey(sb.GetAddress(), int32(sb.GetPortValue())))
		})
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: ClusterName(svc.Namespace, svc.Name, p.Port)}
		if len(lbs) > 0 {
			// gRPC refuses localities without a locality message and
			// ignores those without a weight.
			cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints:         lbs,
			}}
		}
		out = append(out, cla)
	}
	return out
}

func epKey(addr string, port int32) string { return addr + "|" + strconv.Itoa(int(port)) }

func ptrStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
		Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)},
	}}
}

func edsCluster(name string) *clusterv3.Cluster {
	h2, _ := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(5 * time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		},
		LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
		},
	}
}

func routeTo(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: cluster,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    cluster,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				}},
			}},
		}},
	}
}

func hcm(statPrefix, cluster string) (*hcmv3.HttpConnectionManager, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeTo(cluster)},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	}, nil
}

func apiListener(name, cluster string) (*listenerv3.Listener, error) {
	m, err := hcm(name, cluster)
	if err != nil {
		return nil, err
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: a}}, nil
}

func httpChain(ip netip.Addr, port uint32, cluster string) (*listenerv3.FilterChain, error) {
	m, err := hcm(cluster, cluster)
	if err != nil {
		return nil, err
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name: cluster,
		FilterChainMatch: &listenerv3.FilterChainMatch{
			PrefixRanges:    []*corev3.CidrRange{{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ip.BitLen()))}},
			DestinationPort: wrapperspb.UInt32(port),
		},
		Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
		}},
	}, nil
}

func outboundListener(chains []*listenerv3.FilterChain) (*listenerv3.Listener, error) {
	odst, err := anypb.New(&originaldstv3.OriginalDst{})
	if err != nil {
		return nil, err
	}
	tcp, err := anypb.New(&tcpproxyv3.TcpProxy{
		StatPrefix:       wellknown.PassthroughClusterName,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: wellknown.PassthroughClusterName},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:    wellknown.OutboundListenerName,
		Address: socketAddress("0.0.0.0", wellknown.ProxyOutboundPort),
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.original_dst",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: odst},
		}},
		FilterChains: chains,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name: wellknown.PassthroughClusterName,
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.tcp_proxy",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp},
			}},
		},
	}, nil
}
