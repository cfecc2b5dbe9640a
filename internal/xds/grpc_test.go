package xds_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// backendAddrs are loopback addresses (Linux routes all of 127/8 to lo);
// the EndpointSlices here never reach an API server, which would refuse them.
var backendAddrs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

// startBackends starts one gRPC health server per backend address, all on
// one port, as the pods of a Service would be.
func startBackends(t *testing.T) int {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		var lis []net.Listener
		port := 0
		ok := true
		for _, a := range backendAddrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, fmt.Sprint(port)))
			if err != nil {
				if errors.Is(err, syscall.EADDRNOTAVAIL) {
					t.Skipf("loopback address %s is not usable here (%v); this test needs 127.0.0.0/8 on lo", a, err)
				}
				ok = false
				break
			}
			lis = append(lis, l)
			port = l.Addr().(*net.TCPAddr).Port
		}
		if !ok {
			for _, l := range lis {
				l.Close()
			}
			continue
		}
		for _, l := range lis {
			s := grpc.NewServer()
			healthpb.RegisterHealthServer(s, health.NewServer())
			go s.Serve(l)
			t.Cleanup(s.Stop)
		}
		return port
	}
	t.Fatal("no port free on every backend address")
	return 0
}

// proxylessCase is one Service with one policy, and what balancing it
// must show to a real gRPC client.
type proxylessCase struct {
	service string
	policy  string // TrafficPolicy spec without targetRef; "" for none
	// spec and endpoint, when set, change the Service and each of its
	// endpoints (the i-th backend address).
	spec     func(*corev1.ServiceSpec)
	endpoint func(i int, e *discoveryv1.Endpoint)
	check    func(t *testing.T, call func(md metadata.MD) string)
}

// reachesOnly: every call reaches the one backend.
func reachesOnly(backend string) func(*testing.T, func(metadata.MD) string) {
	return func(t *testing.T, call func(metadata.MD) string) {
		for i := 0; i < 50; i++ {
			if got := call(nil); got != backend {
				t.Fatalf("call %d reached %s, want only %s", i, got, backend)
			}
		}
	}
}

// spreadsEvenly: 300 calls reach each backend for at least a fifth of them.
func spreadsEvenly(t *testing.T, call func(metadata.MD) string) {
	counts := map[string]int{}
	for i := 0; i < 300; i++ {
		counts[call(nil)]++
	}
	for _, a := range backendAddrs {
		if counts[a] < 60 {
			t.Errorf("backend %s got %d of 300 calls (all: %v); want per-request balancing", a, counts[a], counts)
		}
	}
}

// pinsByHeader: each x-user value always reaches the same backend, and
// different values reach more than one backend.
func pinsByHeader(t *testing.T, call func(metadata.MD) string) {
	used := map[string]bool{}
	for u := 0; u < 20; u++ {
		md := metadata.Pairs("x-user", fmt.Sprintf("user-%d", u))
		first := call(md)
		used[first] = true
		for i := 0; i < 10; i++ {
			if got := call(md); got != first {
				t.Fatalf("user-%d went to %s, then to %s: not pinned", u, first, got)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("20 users all hashed to %v; want them spread", used)
	}
}

// pinsChannel: hashing on the source pins one client channel to one backend.
func pinsChannel(t *testing.T, call func(metadata.MD) string) {
	first := call(nil)
	for i := 0; i < 50; i++ {
		if got := call(nil); got != first {
			t.Fatalf("call %d went to %s, the first to %s: the channel is not pinned", i, got, first)
		}
	}
}

// The proxyless resources are served to grpc-go's own xDS client, which
// must accept every one of them (no NACK) and balance as the policy says.
func TestProxylessResourcesWorkWithGRPC(t *testing.T) {
	port := startBackends(t)
	cases := []proxylessCase{
		{service: "default", check: spreadsEvenly},
		{service: "least-request", policy: `{loadBalancer: {policy: LeastRequest, leastRequest: {choiceCount: 3}, slowStart: 10s}}`, check: spreadsEvenly},
		{service: "round-robin", policy: `{loadBalancer: {policy: RoundRobin}}`, check: spreadsEvenly},
		{service: "random", policy: `{loadBalancer: {policy: Random}}`, check: spreadsEvenly},
		{service: "ring-hash", policy: `{loadBalancer: {policy: RingHash, hashOn: {header: x-user}}}`, check: pinsByHeader},
		{service: "maglev", policy: `{loadBalancer: {policy: Maglev, hashOn: {header: X-User}}}`, check: pinsByHeader},
		{service: "source-ip", policy: `{loadBalancer: {policy: RingHash, hashOn: {sourceIP: true}}}`, check: pinsChannel},
		{service: "everything", policy: `
loadBalancer: {policy: RoundRobin, slowStart: 30s}
outlierDetection: {consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
retries: {attempts: 3, retryOn: "unavailable,reset,cancelled", perTryTimeout: 1s}
timeout: 5s
maxRequestsPerConnection: 1000`, check: spreadsEvenly},
		{service: "session-affinity", spec: func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityClientIP }, check: pinsChannel},
		{service: "affinity-overridden", spec: func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityClientIP },
			policy: `{loadBalancer: {policy: RoundRobin}}`, check: spreadsEvenly},
		{service: "local", spec: func(s *corev1.ServiceSpec) { s.InternalTrafficPolicy = new(corev1.ServiceInternalTrafficPolicyLocal) },
			endpoint: func(i int, e *discoveryv1.Endpoint) { e.NodeName = new(fmt.Sprintf("node-%d", i)) }, check: reachesOnly(backendAddrs[1])},
		{service: "same-zone", spec: func(s *corev1.ServiceSpec) {
			s.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
		},
			endpoint: func(i int, e *discoveryv1.Endpoint) {
				zone := fmt.Sprintf("zone-%d", i)
				e.Zone, e.Hints = &zone, &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
			}, check: reachesOnly(backendAddrs[2])},
		{service: "terminating", endpoint: func(i int, e *discoveryv1.Endpoint) {
			e.Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)}
		}, check: spreadsEvenly},
	}

	// The client runs on node-1 in zone-2.
	in := xds.Inputs{Local: xds.Locality{Node: "node-1", Zone: "zone-2"}}
	for i, c := range cases {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: c.service},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", i+1),
				Ports: []corev1.ServicePort{{Name: "grpc", Port: int32(port)}}},
		}
		if c.spec != nil {
			c.spec(&svc.Spec)
		}
		in.Services = append(in.Services, svc)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: c.service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: c.service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("grpc"), Port: new(int32(port))}},
		}
		for i, a := range backendAddrs {
			e := discoveryv1.Endpoint{Addresses: []string{a}}
			if c.endpoint != nil {
				c.endpoint(i, &e)
			}
			sl.Endpoints = append(sl.Endpoints, e)
		}
		in.EndpointSlices = append(in.EndpointSlices, sl)
		if c.policy != "" {
			tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: c.service}}
			if err := yaml.UnmarshalStrict([]byte(c.policy), &tp.Spec); err != nil {
				t.Fatal(err)
			}
			tp.Spec.TargetRef.Name = c.service
			in.Policies = append(in.Policies, tp)
		}
	}
	res, errs := xds.Translate(in, xds.Proxyless)
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	nacks := serveXDS(t, res, "client.demo")
	resolver := xdsResolver(t, nacks.socket, "client.demo")
	for _, c := range cases {
		t.Run(c.service, func(t *testing.T) {
			target := "xds:///" + xds.ServiceHost("demo", c.service, int32(port))
			conn, err := grpc.NewClient(target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := healthpb.NewHealthClient(conn)
			call := func(md metadata.MD) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if md != nil {
					ctx = metadata.NewOutgoingContext(ctx, md)
				}
				var p peer.Peer
				if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
					t.Fatalf("call through %s: %v (NACKs: %v)", target, err, nacks.list())
				}
				host, _, _ := net.SplitHostPort(p.Addr.String())
				return host
			}
			c.check(t, call)
		})
	}
	if n := nacks.list(); len(n) > 0 {
		t.Errorf("gRPC refused resources:\n%s", strings.Join(n, "\n"))
	}
}

type xdsServer struct {
	socket string
	mu     sync.Mutex
	nacked []string
}

func (s *xdsServer) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacked...)
}

func xdsResolver(t *testing.T, socket, nodeID string) resolver.Builder {
	t.Helper()
	cfg, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: nodeID, XDSSocket: socket})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// The harness above must notice a resource gRPC refuses: a listener
// whose HTTP filters do not end with the router is NACKed.
func TestGRPCHarnessSeesRefusal(t *testing.T) {
	res, errs := xds.Translate(xds.Inputs{Services: []*corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "broken"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}},
	}}}, xds.Proxyless)
	if len(errs) > 0 || len(res.Listeners) != 1 {
		t.Fatal(errs)
	}
	l := res.Listeners[0].(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters = nil
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	l.ApiListener.ApiListener = a

	srv := serveXDS(t, res, "client.demo")
	conn, err := grpc.NewClient("xds:///"+xds.ServiceHost("demo", "broken", 50051),
		grpc.WithResolvers(xdsResolver(t, srv.socket, "client.demo")), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		t.Fatal("a call through a refused listener succeeded")
	}
	// The NACK may reach the server just after the call failed.
	var n []string
	for deadline := time.Now().Add(5 * time.Second); len(n) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n = srv.list()
	}
	if len(n) == 0 || !strings.Contains(n[0], "http filters list is empty") {
		t.Errorf("NACKs %v, want gRPC's refusal of the empty filter list", n)
	}
}

// snapshot puts the resources in a go-control-plane snapshot and checks
// that they are consistent (every referenced route configuration and load
// assignment present, nothing unreferenced).
func snapshot(t *testing.T, res *xds.Resources) *cachev3.Snapshot {
	t.Helper()
	snap, err := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{
		resource.ListenerType: res.Listeners,
		resource.RouteType:    res.Routes,
		resource.ClusterType:  res.Clusters,
		resource.EndpointType: res.Endpoints,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("snapshot not consistent: %v", err)
	}
	return snap
}

// serveXDS serves the resources over ADS on a Unix socket with
// go-control-plane's snapshot cache, recording every NACK.
func serveXDS(t *testing.T, res *xds.Resources, nodeID string) *xdsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Not ADS mode: in it the cache answers only requests naming every
	// listener it holds, and gRPC asks for the listeners it dials.
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	if err := cache.SetSnapshot(ctx, nodeID, snapshot(t, res)); err != nil {
		t.Fatal(err)
	}
	s := &xdsServer{socket: filepath.Join(t.TempDir(), "xds.sock")}
	callbacks := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
		if d := req.GetErrorDetail(); d != nil {
			s.mu.Lock()
			s.nacked = append(s.nacked, fmt.Sprintf("%s %v: %s", req.GetTypeUrl(), req.GetResourceNames(), d.GetMessage()))
			s.mu.Unlock()
		}
		return nil
	}}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, cache, callbacks))
	l, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	return s
}
