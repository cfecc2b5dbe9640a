package xds

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLoadAssignment(t *testing.T) {
	p := testService("demo", "greeter", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	p.endpoints = []endpoint{
		{addr: netip.MustParseAddrPort("10.244.0.1:50051"), extra: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:50051")}},
		{addr: netip.MustParseAddrPort("[2001:db8::2]:50051")},
	}
	for _, mode := range []Mode{Sidecar, Proxyless} {
		cla := loadAssignment(p, mode)
		if err := Validate(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() != "outbound|8000||greeter.demo.svc.cluster.local" {
			t.Errorf("cluster name %q", cla.GetClusterName())
		}
		loc := cla.GetEndpoints()
		// gRPC drops a locality without weight, and needs one to be set.
		if len(loc) != 1 || loc[0].GetLocality() == nil || loc[0].GetLoadBalancingWeight().GetValue() != 1 || loc[0].GetPriority() != 0 {
			t.Fatalf("%v: localities %v, want one of weight 1", mode, loc)
		}
		eps := loc[0].GetLbEndpoints()
		if len(eps) != 2 {
			t.Fatalf("%v: %d endpoints, want 2", mode, len(eps))
		}
		e0 := eps[0].GetEndpoint()
		if sa := e0.GetAddress().GetSocketAddress(); sa.GetAddress() != "10.244.0.1" || sa.GetPortValue() != 50051 {
			t.Errorf("first endpoint %v", sa)
		}
		if x := e0.GetAdditionalAddresses(); len(x) != 1 || x[0].GetAddress().GetSocketAddress().GetAddress() != "2001:db8::1" {
			t.Errorf("dual-stack endpoint's other address %v", x)
		}
		if sa := eps[1].GetEndpoint().GetAddress().GetSocketAddress(); sa.GetAddress() != "2001:db8::2" || sa.GetPortValue() != 50051 {
			t.Errorf("IPv6 endpoint %v", sa)
		}
	}

	p.endpoints = nil
	if cla := loadAssignment(p, Sidecar); cla == nil || len(cla.GetEndpoints()) != 0 {
		t.Errorf("no ready endpoints: %v, want an assignment without endpoints", cla)
	}
	h := testService("ns", "db", nil, protoTCP).ports[0]
	if cla := loadAssignment(h, Sidecar); cla != nil {
		t.Errorf("headless sidecar has no EDS cluster, got %v", cla)
	}
	if cla := loadAssignment(h, Proxyless); cla == nil {
		t.Errorf("headless proxyless needs its endpoints")
	}
}

// Each priority is one locality of weight 1, numbered as the endpoints are.
func TestLoadAssignmentPriorities(t *testing.T) {
	p := testService("demo", "greeter", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	p.endpoints = []endpoint{
		{addr: netip.MustParseAddrPort("10.244.0.2:50051")},
		{addr: netip.MustParseAddrPort("10.244.0.1:50051"), priority: 1},
		{addr: netip.MustParseAddrPort("10.244.0.3:50051"), priority: 1},
		{addr: netip.MustParseAddrPort("10.244.0.4:50051"), priority: 2},
	}
	for _, mode := range []Mode{Sidecar, Proxyless} {
		cla := loadAssignment(p, mode)
		if err := Validate(cla); err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, loc := range cla.GetEndpoints() {
			if loc.GetPriority() != uint32(i) || loc.GetLoadBalancingWeight().GetValue() != 1 || loc.GetLocality() == nil {
				t.Errorf("%v: locality %d has priority %d, weight %v", mode, i, loc.GetPriority(), loc.GetLoadBalancingWeight())
			}
			var addrs []string
			for _, e := range loc.GetLbEndpoints() {
				addrs = append(addrs, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
			got = append(got, strings.Join(addrs, ","))
		}
		if want := "10.244.0.2 10.244.0.1,10.244.0.3 10.244.0.4"; strings.Join(got, " ") != want {
			t.Errorf("%v: localities %q, want %q", mode, got, want)
		}
	}
}
