package xds

import (
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

func routeOf(t *testing.T, p *servicePort, mode Mode) *routev3.RouteAction {
	t.Helper()
	rc := routeConfiguration(p, mode)
	if err := Validate(rc); err != nil {
		t.Fatal(err)
	}
	if rc.GetName() != p.hostPort() {
		t.Errorf("route configuration %q, want %q", rc.GetName(), p.hostPort())
	}
	vh := rc.GetVirtualHosts()
	if len(vh) != 1 || len(vh[0].GetDomains()) != 1 || vh[0].GetDomains()[0] != "*" || len(vh[0].GetRoutes()) != 1 {
		t.Fatalf("virtual hosts %v: want one, for any host, with one route", vh)
	}
	r := vh[0].GetRoutes()[0]
	if r.GetMatch().GetPrefix() != "/" {
		t.Errorf("route matches %v, want every path", r.GetMatch())
	}
	return r.GetRoute()
}

func TestRouteDefaults(t *testing.T) {
	p := testService("demo", "greeter", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	a := routeOf(t, p, Sidecar)
	if a.GetCluster() != "outbound|8000||greeter.demo.svc.cluster.local" {
		t.Errorf("cluster %q", a.GetCluster())
	}
	// Envoy's default route timeout is 15s, which would cut long streams.
	if a.GetTimeout() == nil || a.GetTimeout().AsDuration() != 0 {
		t.Errorf("timeout %v, want explicitly 0 (none)", a.GetTimeout())
	}
	if a.GetRetryPolicy() != nil || len(a.GetHashPolicy()) != 0 {
		t.Errorf("default route has retries %v or hashing %v", a.GetRetryPolicy(), a.GetHashPolicy())
	}
	a = routeOf(t, p, Proxyless)
	if a.GetTimeout() != nil || a.GetMaxStreamDuration() != nil {
		t.Errorf("proxyless default route has a deadline: %v %v", a.GetTimeout(), a.GetMaxStreamDuration())
	}
}

func TestRoutePolicy(t *testing.T) {
	p := testService("demo", "greeter", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	p.policy = policy{
		lb: lbRingHash, hashHeader: "x-user",
		retry:   &retry{attempts: 3, retryOn: "unavailable,reset", perTryTimeout: 250 * time.Millisecond},
		timeout: 4 * time.Second,
	}

	a := routeOf(t, p, Sidecar)
	if a.GetTimeout().AsDuration() != 4*time.Second {
		t.Errorf("timeout %v, want 4s", a.GetTimeout())
	}
	rp := a.GetRetryPolicy()
	if rp.GetRetryOn() != "unavailable,reset" || rp.GetNumRetries().GetValue() != 3 || rp.GetPerTryTimeout().AsDuration() != 250*time.Millisecond {
		t.Errorf("retry policy %v", rp)
	}
	if hp := rp.GetRetryHostPredicate(); len(hp) != 1 || hp[0].GetName() != "envoy.retry_host_predicates.previous_hosts" {
		t.Errorf("retries must go to another endpoint: %v", hp)
	}
	if h := a.GetHashPolicy(); len(h) != 1 || h[0].GetHeader().GetHeaderName() != "x-user" {
		t.Errorf("hash policy %v, want the x-user header", h)
	}

	a = routeOf(t, p, Proxyless)
	if a.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration() != 4*time.Second || a.GetTimeout() != nil {
		t.Errorf("proxyless deadline: max_stream_duration %v timeout %v, want 4s in max_stream_duration (what gRPC reads)",
			a.GetMaxStreamDuration(), a.GetTimeout())
	}
	rp = a.GetRetryPolicy()
	if rp.GetNumRetries().GetValue() != 3 || rp.GetRetryOn() != "unavailable,reset" || rp.GetPerTryTimeout() != nil || len(rp.GetRetryHostPredicate()) != 0 {
		t.Errorf("proxyless retry policy %v: want only what gRPC reads", rp)
	}

	// Source-address hashing: the connection's source in Envoy, the
	// channel in gRPC.
	p.policy = policy{lb: lbMaglev, hashSourceIP: true}
	if h := routeOf(t, p, Sidecar).GetHashPolicy(); len(h) != 1 || !h[0].GetConnectionProperties().GetSourceIp() {
		t.Errorf("sidecar source-IP hash policy %v", h)
	}
	if h := routeOf(t, p, Proxyless).GetHashPolicy(); len(h) != 1 || h[0].GetFilterState().GetKey() != "io.grpc.channel_id" {
		t.Errorf("proxyless source-IP hash policy %v, want the gRPC channel id", h)
	}
}
