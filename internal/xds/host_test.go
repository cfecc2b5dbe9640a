package xds_test

import (
	"testing"

	"github.com/tandem-mesh/tandem/internal/xds"
)

func TestServiceOfHost(t *testing.T) {
	ns, name, ok := xds.ServiceOfHost(xds.ServiceHost("shop", "cart", 50051))
	if !ok || ns != "shop" || name != "cart" {
		t.Fatalf("ServiceOfHost(ServiceHost(shop, cart)) = %q, %q, %v", ns, name, ok)
	}
	for _, bad := range []string{
		"cart.shop.svc.cluster.local",  // no port
		"cart.shop.svc.cluster.local:", // empty port
		"cart.shop.svc.example.org:80", // another domain
		"cart.svc.cluster.local:80",    // no namespace
		"a.b.c.svc.cluster.local:80",   // too many labels
		"outbound|80||cart.shop.svc.cluster.local",
	} {
		if ns, name, ok := xds.ServiceOfHost(bad); ok {
			t.Errorf("ServiceOfHost(%q) = %q, %q; want not a Service host", bad, ns, name)
		}
	}
}
