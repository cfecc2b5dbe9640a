package xds

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tandem "github.com/tandem-mesh/tandem/internal/wellknown"
)

// sniffTimeout bounds how long http_inspector waits for a client's first
// bytes on an undeclared port before the connection is proxied as TCP
// (which still reaches the Service, balanced per connection). Only
// undeclared ports wait; a server-first protocol there should be declared.
const sniffTimeout = time.Second

// sniffedProtocols are what http_inspector reports for HTTP traffic.
var sniffedProtocols = []string{"http/1.0", "http/1.1", "h2c"}

// outboundListener is the sidecar's capture listener: the original
// destination is recovered from the redirected connection, a filter chain
// per Service address and port handles traffic for a Service, and anything
// else passes through to where it was going. A destination claimed twice
// (two Services with one ClusterIP:port, or a pod behind two headless
// Services) goes to the first Service in namespace/name order; only the
// ClusterIP case is reported, as the headless one is routine.
// It also returns the ports that got an HTTP connection manager, which
// need their route configuration.
func outboundListener(m *model) (*listenerv3.Listener, []*servicePort, []error) {
	oc := &outboundChains{claimed: map[netip.AddrPort]objectKey{}}
	// ClusterIP Services claim their addresses before headless ones.
	for _, headless := range []bool{false, true} {
		for _, s := range m.services {
			if s.headless == headless {
				oc.addService(s)
			}
		}
	}
	slices.Sort(oc.sniffPorts)

	l := &listenerv3.Listener{
		Name:                             tandem.OutboundListenerName,
		Address:                          socketAddress(netip.AddrPortFrom(netip.IPv4Unspecified(), tandem.ProxyOutboundPort)),
		TrafficDirection:                 corev3.TrafficDirection_OUTBOUND,
		ListenerFilters:                  listenerFilters(oc.sniffPorts),
		ListenerFiltersTimeout:           duration(sniffTimeout),
		ContinueOnListenerFiltersTimeout: true,
		FilterChains:                     oc.chains,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    tandem.PassthroughClusterName,
			Filters: []*listenerv3.Filter{tcpProxyFilter(tandem.PassthroughClusterName)},
		},
	}
	// Redirected IPv6 connections arrive on [::]; listen there only when the
	// cluster has IPv6 Services, as the bind fails where IPv6 is off.
	if oc.ipv6 {
		l.AdditionalAddresses = []*listenerv3.AdditionalAddress{{
			Address: socketAddress(netip.AddrPortFrom(netip.IPv6Unspecified(), tandem.ProxyOutboundPort)),
		}}
	}
	return l, oc.httpPorts, oc.errs
}

// outboundChains collects the capture listener's filter chains as Service
// ports claim the destinations they are reached at.
type outboundChains struct {
	claimed    map[netip.AddrPort]objectKey
	chains     []*listenerv3.FilterChain
	httpPorts  []*servicePort // ports with an HTTP connection manager
	sniffPorts []uint32       // destination ports whose protocol is sniffed
	ipv6       bool           // some destination is an IPv6 address
	errs       []error
}

func (oc *outboundChains) addService(s *service) {
	for _, p := range s.ports {
		if p.dropped {
			continue
		}
		for _, dst := range destinations(p) {
			oc.addDestination(s, p, dst)
		}
	}
}

// addDestination adds the filter chains of Service port p for dst, less the
// addresses another Service claimed first.
func (oc *outboundChains) addDestination(s *service, p *servicePort, dst destination) {
	addrs := oc.claim(s, p, dst)
	if len(addrs) == 0 {
		return
	}
	oc.chains = append(oc.chains, serviceFilterChains(p, dst.port, addrs)...)
	if p.protocol != protoTCP && !slices.Contains(oc.httpPorts, p) {
		oc.httpPorts = append(oc.httpPorts, p)
	}
	if p.protocol == protoSniff && !slices.Contains(oc.sniffPorts, uint32(dst.port)) {
		oc.sniffPorts = append(oc.sniffPorts, uint32(dst.port))
	}
}

// claim returns the addresses of dst no Service has claimed yet, claiming
// them for s. A ClusterIP:port claimed twice is reported; a pod behind two
// headless Services is routine.
func (oc *outboundChains) claim(s *service, p *servicePort, dst destination) []netip.Addr {
	var addrs []netip.Addr
	for _, a := range dst.addrs {
		k := netip.AddrPortFrom(a, dst.port)
		if owner, taken := oc.claimed[k]; taken {
			if !s.headless {
				oc.errs = append(oc.errs, &ObjectError{Kind: "Service", Namespace: s.key.namespace, Name: s.key.name,
					Err: fmt.Errorf("port %d: %s is already the address of Service %s, which gets its traffic", p.port, k, owner)})
			}
			continue
		}
		oc.claimed[k] = s.key
		addrs = append(addrs, a)
		oc.ipv6 = oc.ipv6 || a.Is6()
	}
	return addrs
}

// destination is one port and the addresses that reach a Service port on it.
type destination struct {
	port  uint16
	addrs []netip.Addr
}

// destinations are where clients connect to reach a Service port: its
// ClusterIPs on the Service port, or for a headless Service the ready
// endpoints' own addresses and ports, since clients dial pods directly.
func destinations(p *servicePort) []destination {
	if !p.svc.headless {
		return []destination{{port: uint16(p.port), addrs: p.svc.clusterIPs}}
	}
	byPort := map[uint16][]netip.Addr{}
	for _, e := range p.endpoints {
		for _, ap := range append([]netip.AddrPort{e.addr}, e.extra...) {
			byPort[ap.Port()] = append(byPort[ap.Port()], ap.Addr())
		}
	}
	out := make([]destination, 0, len(byPort))
	for port, addrs := range byPort {
		slices.SortFunc(addrs, netip.Addr.Compare)
		out = append(out, destination{port: port, addrs: addrs})
	}
	slices.SortFunc(out, func(a, b destination) int { return cmp.Compare(a.port, b.port) })
	return out
}

// serviceFilterChains handle one Service port's connections to addrs:port:
// HTTP through the route configuration, opaque TCP straight to the
// cluster, or, for an undeclared protocol, HTTP when sniffed and TCP if not.
func serviceFilterChains(p *servicePort, port uint16, addrs []netip.Addr) []*listenerv3.FilterChain {
	name := p.hostPort()
	if port != uint16(p.port) {
		name = fmt.Sprintf("%s@%d", name, port)
	}
	match := func(appProtocols []string) *listenerv3.FilterChainMatch {
		m := &listenerv3.FilterChainMatch{
			DestinationPort:      wrapperspb.UInt32(uint32(port)),
			ApplicationProtocols: appProtocols,
		}
		for _, a := range addrs {
			m.PrefixRanges = append(m.PrefixRanges, &corev3.CidrRange{
				AddressPrefix: a.String(),
				PrefixLen:     wrapperspb.UInt32(uint32(a.BitLen())),
			})
		}
		return m
	}
	httpChain := func(name string, appProtocols []string) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: match(appProtocols),
			Filters: []*listenerv3.Filter{httpConnectionManagerFilter(p)}}
	}
	tcpChain := func(name string) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: match(nil),
			Filters: []*listenerv3.Filter{tcpProxyFilter(p.clusterName())}}
	}
	switch p.protocol {
	case protoHTTP, protoHTTP2:
		return []*listenerv3.FilterChain{httpChain(name, nil)}
	case protoSniff:
		return []*listenerv3.FilterChain{httpChain(name+"/http", sniffedProtocols), tcpChain(name + "/tcp")}
	default:
		return []*listenerv3.FilterChain{tcpChain(name)}
	}
}

// listenerFilters recover the original destination and, when some ports
// are sniffed, detect HTTP on those ports only: elsewhere the inspector
// would only delay server-first protocols.
func listenerFilters(sniffPorts []uint32) []*listenerv3.ListenerFilter {
	filters := []*listenerv3.ListenerFilter{{
		Name:       wellknown.OriginalDestination,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: typed(&originaldstv3.OriginalDst{})},
	}}
	if len(sniffPorts) == 0 {
		return filters
	}
	rules := make([]*listenerv3.ListenerFilterChainMatchPredicate, len(sniffPorts))
	for i, port := range sniffPorts {
		rules[i] = &listenerv3.ListenerFilterChainMatchPredicate{
			Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
				DestinationPortRange: &typev3.Int32Range{Start: int32(port), End: int32(port) + 1},
			},
		}
	}
	sniffed := rules[0]
	if len(rules) > 1 {
		sniffed = &listenerv3.ListenerFilterChainMatchPredicate{
			Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{
				OrMatch: &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{Rules: rules},
			},
		}
	}
	return append(filters, &listenerv3.ListenerFilter{
		Name:       wellknown.HTTPInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: typed(&httpinspectorv3.HttpInspector{})},
		FilterDisabled: &listenerv3.ListenerFilterChainMatchPredicate{
			Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: sniffed},
		},
	})
}

// httpConnectionManagerFilter terminates HTTP/1 and HTTP/2 (gRPC) from the
// application and routes each request by the Service port's route
// configuration. Nothing a direct connection would not do is added: no
// idle-stream timeout (long gRPC streams stay open), no Envoy headers,
// WebSocket upgrades pass.
func httpConnectionManagerFilter(p *servicePort) *listenerv3.Filter {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: p.clusterName(),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: p.hostPort(),
		}},
		HttpFilters:       []*hcmv3.HttpFilter{routerFilter(&routerv3.Router{SuppressEnvoyHeaders: true})},
		StreamIdleTimeout: duration(0),
		GenerateRequestId: wrapperspb.Bool(false),
		UpgradeConfigs:    []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
	}
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(hcm)},
	}
}

func routerFilter(r *routerv3.Router) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(r)},
	}
}

func tcpProxyFilter(cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(&tcpproxyv3.TcpProxy{
			StatPrefix:       cluster,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		})},
	}
}

// apiListener is what a proxyless gRPC client asks for when it dials
// xds:///<host>:<port>: an HTTP connection manager whose only filter is the
// router, which gRPC requires to be last, with the route configuration
// inline. Inline saves a round trip, and go-control-plane's consistency
// check does not follow an API listener's RDS reference.
func apiListener(p *servicePort) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     p.clusterName(),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeConfiguration(p, Proxyless)},
		HttpFilters:    []*hcmv3.HttpFilter{routerFilter(&routerv3.Router{})},
	}
	return &listenerv3.Listener{
		Name:        p.hostPort(),
		ApiListener: &listenerv3.ApiListener{ApiListener: typed(hcm)},
	}
}
