package main

import (
	"net"
	"slices"
	"testing"
)

// The certificate the injector issues names its Services, the host agents
// dial, and loopback (port-forward), each once.
func TestServingNames(t *testing.T) {
	for _, c := range []struct {
		address string
		dns     []string
		ips     []string
	}{
		{"tandem-discovery.mesh.svc:15012", nil, nil},
		{"discovery.example.com:443", []string{"discovery.example.com"}, nil},
		{"10.0.0.9:15012", nil, []string{"10.0.0.9"}},
		{"127.0.0.1:15012", nil, nil},
		{"", nil, nil},
	} {
		dns, ips := servingNames("mesh", c.address)
		wantDNS := append([]string{"tandem-discovery.mesh.svc", "tandem-discovery.mesh.svc.cluster.local",
			"tandem-webhook.mesh.svc", "tandem-webhook.mesh.svc.cluster.local", "localhost"}, c.dns...)
		if !slices.Equal(dns, wantDNS) {
			t.Errorf("%q: DNS names %v, want %v", c.address, dns, wantDNS)
		}
		var got []string
		for _, ip := range ips {
			got = append(got, ip.String())
		}
		if want := append([]string{"127.0.0.1", net.IPv6loopback.String()}, c.ips...); !slices.Equal(got, want) {
			t.Errorf("%q: IPs %v, want %v", c.address, got, want)
		}
	}
}
