package xds

import (
	"net/netip"
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// testService builds the model of one Service with one port per protocol
// given, numbered from 8000.
func testService(ns, name string, clusterIPs []string, protocols ...protocol) *service {
	s := &service{key: objectKey{ns, name}, headless: len(clusterIPs) == 0}
	for _, ip := range clusterIPs {
		s.clusterIPs = append(s.clusterIPs, netip.MustParseAddr(ip))
	}
	for i, pr := range protocols {
		s.ports = append(s.ports, &servicePort{svc: s, port: int32(8000 + i), protocol: pr, policy: defaultPolicy})
	}
	return s
}

func hcmOf(t *testing.T, f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	t.Helper()
	if f.GetName() != "envoy.filters.network.http_connection_manager" {
		t.Fatalf("filter %q, want the HTTP connection manager", f.GetName())
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	return h
}

func tcpOf(t *testing.T, f *listenerv3.Filter) *tcpproxyv3.TcpProxy {
	t.Helper()
	if f.GetName() != "envoy.filters.network.tcp_proxy" {
		t.Fatalf("filter %q, want the TCP proxy", f.GetName())
	}
	p := &tcpproxyv3.TcpProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOutboundListener(t *testing.T) {
	grpcSvc := testService("demo", "greeter", []string{"10.96.0.10"}, protoHTTP2)
	tcpSvc := testService("data", "pg", []string{"10.96.0.20"}, protoTCP)
	l, httpPorts, errs := outboundListener(&model{services: []*service{tcpSvc, grpcSvc}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(httpPorts) != 1 || httpPorts[0] != grpcSvc.ports[0] {
		t.Errorf("ports needing a route configuration: %v, want the gRPC one only", httpPorts)
	}
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if l.GetName() != "outbound" || l.GetAddress().GetSocketAddress().GetAddress() != "0.0.0.0" ||
		l.GetAddress().GetSocketAddress().GetPortValue() != 15001 {
		t.Errorf("listener %q on %v, want outbound on 0.0.0.0:15001", l.GetName(), l.GetAddress())
	}
	if len(l.GetAdditionalAddresses()) != 0 {
		t.Errorf("an IPv4-only cluster must not bind [::] (it fails where IPv6 is off)")
	}
	if lf := l.GetListenerFilters(); len(lf) != 1 || lf[0].GetName() != "envoy.filters.listener.original_dst" {
		t.Errorf("listener filters %v: want only original_dst when no port is sniffed", lf)
	}
	// The passthrough catches everything that is no Service.
	if dc := l.GetDefaultFilterChain(); tcpOf(t, dc.GetFilters()[0]).GetCluster() != "passthrough" {
		t.Errorf("default chain %v: want a TCP proxy to the passthrough cluster", dc)
	}

	chains := l.GetFilterChains()
	if len(chains) != 2 {
		t.Fatalf("%d filter chains, want one per Service port", len(chains))
	}
	byName := map[string]*listenerv3.FilterChain{}
	for _, c := range chains {
		byName[c.GetName()] = c
	}
	g := byName["greeter.demo.svc.cluster.local:8000"]
	if m := g.GetFilterChainMatch(); m.GetDestinationPort().GetValue() != 8000 || len(m.GetPrefixRanges()) != 1 ||
		m.GetPrefixRanges()[0].GetAddressPrefix() != "10.96.0.10" || m.GetPrefixRanges()[0].GetPrefixLen().GetValue() != 32 ||
		len(m.GetApplicationProtocols()) != 0 {
		t.Errorf("gRPC chain match %v, want 10.96.0.10/32 port 8000", m)
	}
	h := hcmOf(t, g.GetFilters()[0])
	if h.GetRds().GetRouteConfigName() != "greeter.demo.svc.cluster.local:8000" || h.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("HCM routes %v, want the port's route configuration over ADS", h.GetRds())
	}
	if h.GetStreamIdleTimeout().AsDuration() != 0 || h.GetStreamIdleTimeout() == nil {
		t.Errorf("stream idle timeout %v: must be explicitly off, long gRPC streams idle", h.GetStreamIdleTimeout())
	}
	if fs := h.GetHttpFilters(); len(fs) != 1 || fs[0].GetName() != "envoy.filters.http.router" {
		t.Errorf("HTTP filters %v, want the router alone", fs)
	} else {
		r := &routerv3.Router{}
		if err := fs[0].GetTypedConfig().UnmarshalTo(r); err != nil || !r.GetSuppressEnvoyHeaders() {
			t.Errorf("router %v (%v): must not add x-envoy headers", r, err)
		}
	}
	p := byName["pg.data.svc.cluster.local:8000"]
	if tcpOf(t, p.GetFilters()[0]).GetCluster() != "outbound|8000||pg.data.svc.cluster.local" {
		t.Errorf("TCP chain %v, want a TCP proxy to the Service port's cluster", p)
	}
}

func TestOutboundListenerSniffsUndeclaredPortsOnly(t *testing.T) {
	s := testService("ns", "legacy", []string{"10.96.0.1"}, protoSniff, protoHTTP, protoSniff)
	l, httpPorts, _ := outboundListener(&model{services: []*service{s}})
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if len(httpPorts) != 3 {
		t.Errorf("%d ports need a route configuration, want all 3 (sniffed ones may be HTTP)", len(httpPorts))
	}
	lf := l.GetListenerFilters()
	if len(lf) != 2 || lf[1].GetName() != "envoy.filters.listener.http_inspector" {
		t.Fatalf("listener filters %v: want original_dst then http_inspector", lf)
	}
	rules := lf[1].GetFilterDisabled().GetNotMatch().GetOrMatch().GetRules()
	var ports []int32
	for _, r := range rules {
		rg := r.GetDestinationPortRange()
		if rg.GetEnd() != rg.GetStart()+1 {
			t.Errorf("range %v is not one port", rg)
		}
		ports = append(ports, rg.GetStart())
	}
	if !slices.Equal(ports, []int32{8000, 8002}) {
		t.Errorf("http_inspector runs on ports %v, want exactly the sniffed 8000 and 8002", ports)
	}
	var sniffed []string
	for _, c := range l.GetFilterChains() {
		if c.GetFilterChainMatch().GetDestinationPort().GetValue() != 8000 {
			continue
		}
		sniffed = append(sniffed, c.GetName())
		switch c.GetName() {
		case "legacy.ns.svc.cluster.local:8000/http":
			if !slices.Equal(c.GetFilterChainMatch().GetApplicationProtocols(), []string{"http/1.0", "http/1.1", "h2c"}) {
				t.Errorf("HTTP chain of a sniffed port matches %v", c.GetFilterChainMatch().GetApplicationProtocols())
			}
			hcmOf(t, c.GetFilters()[0])
		case "legacy.ns.svc.cluster.local:8000/tcp":
			if len(c.GetFilterChainMatch().GetApplicationProtocols()) != 0 {
				t.Errorf("TCP chain of a sniffed port must match anything else")
			}
			tcpOf(t, c.GetFilters()[0])
		}
	}
	if len(sniffed) != 2 {
		t.Errorf("sniffed port has chains %v, want an HTTP and a TCP one", sniffed)
	}

	// One sniffed port: a single range, no or_match (which needs two rules).
	one := testService("ns", "one", []string{"10.96.0.2"}, protoSniff)
	l, _, _ = outboundListener(&model{services: []*service{one}})
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if r := l.GetListenerFilters()[1].GetFilterDisabled().GetNotMatch().GetDestinationPortRange(); r.GetStart() != 8000 {
		t.Errorf("single sniffed port: filter_disabled %v", l.GetListenerFilters()[1].GetFilterDisabled())
	}
}

func TestOutboundListenerIPv6AndHeadless(t *testing.T) {
	dual := testService("ns", "dual", []string{"10.96.0.1", "fd00::1"}, protoHTTP2)
	headless := testService("ns", "db", nil, protoTCP)
	hp := headless.ports[0]
	hp.endpoints = []endpoint{
		{addr: netip.MustParseAddrPort("10.244.0.1:9000")},
		{addr: netip.MustParseAddrPort("10.244.0.2:9001"), extra: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::2]:9001")}},
	}
	l, _, errs := outboundListener(&model{services: []*service{headless, dual}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if a := l.GetAdditionalAddresses(); len(a) != 1 || a[0].GetAddress().GetSocketAddress().GetAddress() != "::" ||
		a[0].GetAddress().GetSocketAddress().GetPortValue() != 15001 {
		t.Errorf("additional addresses %v, want [::]:15001 for IPv6 Services", a)
	}
	got := map[string][]string{}
	for _, c := range l.GetFilterChains() {
		for _, r := range c.GetFilterChainMatch().GetPrefixRanges() {
			got[c.GetName()] = append(got[c.GetName()], netip.PrefixFrom(netip.MustParseAddr(r.GetAddressPrefix()), int(r.GetPrefixLen().GetValue())).String())
		}
	}
	want := map[string][]string{
		"dual.ns.svc.cluster.local:8000":    {"10.96.0.1/32", "fd00::1/128"},
		"db.ns.svc.cluster.local:8000@9000": {"10.244.0.1/32"},
		"db.ns.svc.cluster.local:8000@9001": {"10.244.0.2/32", "2001:db8::2/128"},
	}
	if len(got) != len(want) {
		t.Errorf("chains %v, want %v", got, want)
	}
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("chain %s matches %v, want %v", name, got[name], w)
		}
	}
}

func TestOutboundListenerAddressClaimedTwice(t *testing.T) {
	a := testService("ns", "a", []string{"10.96.0.1"}, protoHTTP2)
	b := testService("ns", "b", []string{"10.96.0.1"}, protoHTTP2, protoTCP)
	h1 := testService("ns", "h1", nil, protoTCP)
	h2 := testService("ns", "h2", nil, protoTCP)
	h1.ports[0].endpoints = []endpoint{{addr: netip.MustParseAddrPort("10.244.0.1:9")}}
	h2.ports[0].endpoints = []endpoint{{addr: netip.MustParseAddrPort("10.244.0.1:9")}, {addr: netip.MustParseAddrPort("10.244.0.2:9")}}
	l, httpPorts, errs := outboundListener(&model{services: []*service{a, b, h1, h2}})
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Error() != "Service ns/b: port 8000: 10.96.0.1:8000 is already the address of Service ns/a, which gets its traffic" {
		t.Errorf("errors %v: want one, for the ClusterIP claimed twice", errs)
	}
	if len(httpPorts) != 1 || httpPorts[0] != a.ports[0] {
		t.Errorf("ports with a connection manager %v, want a's alone (b's gRPC port lost its address)", httpPorts)
	}
	var names []string
	for _, c := range l.GetFilterChains() {
		names = append(names, c.GetName())
	}
	want := []string{"a.ns.svc.cluster.local:8000", "b.ns.svc.cluster.local:8001", "h1.ns.svc.cluster.local:8000@9", "h2.ns.svc.cluster.local:8000@9"}
	if !slices.Equal(names, want) {
		t.Errorf("chains %v, want %v", names, want)
	}
	if r := l.GetFilterChains()[3].GetFilterChainMatch().GetPrefixRanges(); len(r) != 1 || r[0].GetAddressPrefix() != "10.244.0.2" {
		t.Errorf("second headless Service matches %v, want only the address the first does not", r)
	}
}

func TestAPIListener(t *testing.T) {
	s := testService("demo", "greeter", nil, protoHTTP2)
	l := apiListener(s.ports[0])
	if err := Validate(l); err != nil {
		t.Fatal(err)
	}
	if l.GetName() != "greeter.demo.svc.cluster.local:8000" || l.GetAddress() != nil {
		t.Errorf("API listener %q at %v, want greeter.demo.svc.cluster.local:8000 without address", l.GetName(), l.GetAddress())
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	if rc := h.GetRouteConfig(); rc.GetName() != "greeter.demo.svc.cluster.local:8000" ||
		rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster() != "outbound|8000||greeter.demo.svc.cluster.local" {
		t.Errorf("inline route configuration %v", rc)
	}
	// gRPC refuses an HTTP filter list whose last filter is not the router.
	if fs := h.GetHttpFilters(); len(fs) == 0 || fs[len(fs)-1].GetName() != "envoy.filters.http.router" {
		t.Errorf("HTTP filters %v: the router must be last", fs)
	}
	if h.GetXffNumTrustedHops() != 0 || len(h.GetOriginalIpDetectionExtensions()) != 0 {
		t.Errorf("gRPC refuses xff_num_trusted_hops and original_ip_detection_extensions")
	}
}
