package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/server"
)

// noPolicies is a TrafficPolicy source with none.
type noPolicies struct{}

func (noPolicies) List(metav1.ListOptions) (k8sruntime.Object, error) {
	return &v1alpha1.TrafficPolicyList{}, nil
}
func (noPolicies) Watch(metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil }

// IsWatchListSemanticsUnSupported makes the reflector list, then watch.
func (noPolicies) IsWatchListSemanticsUnSupported() bool { return true }

const (
	benchServices  = 1000
	benchEndpoints = 10 // per Service
)

// benchObjects are benchServices Services in 10 namespaces with one
// EndpointSlice of benchEndpoints endpoints each, carrying the managed
// fields and annotations real objects have.
func benchObjects() []k8sruntime.Object {
	var objs []k8sruntime.Object
	for i := range benchServices {
		ns := fmt.Sprintf("ns-%d", i%10)
		name := fmt.Sprintf("svc-%d", i)
		svc := kubeobj.Service(ns, name, "grpc", 50051, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		svc.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q,"namespace":%q},"spec":{"ports":[{"name":"grpc","port":50051}],"selector":{"app":%q}}}`, name, ns, name)}
		svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1",
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{"k:{\"port\":50051,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{}}},"f:selector":{}}}`)}}}
		addrs := make([]string, benchEndpoints)
		for j := range addrs {
			addrs[j] = fmt.Sprintf("10.128.%d.%d", i%250, j+1)
		}
		slice := kubeobj.EndpointSlice(ns, name+"-abcde", name, "grpc", 50051, addrs...)
		slice.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "endpointslice-controller", Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "discovery.k8s.io/v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:addressType":{},"f:endpoints":{},"f:metadata":{"f:labels":{}},"f:ports":{}}`)}}}
		objs = append(objs, svc, slice)
	}
	return objs
}

// benchRoutes are an HTTPRoute on each Service of benchObjects, canary
// style: two rules, three backends, the next Service in another namespace.
func benchRoutes(objs []k8sruntime.Object) []*gatewayv1.HTTPRoute {
	var svcs []*corev1.Service
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			svcs = append(svcs, s)
		}
	}
	routes := make([]*gatewayv1.HTTPRoute, len(svcs))
	for i, s := range svcs {
		routes[i] = kubeobj.CanaryRoute(s, svcs[(i+1)%len(svcs)], 50051)
	}
	return routes
}

// staticRoutes is an HTTPRoute source that never changes.
type staticRoutes []*gatewayv1.HTTPRoute

func (r staticRoutes) List(metav1.ListOptions) (k8sruntime.Object, error) {
	list := &gatewayv1.HTTPRouteList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, route := range r {
		list.Items = append(list.Items, *route.DeepCopy())
	}
	return list, nil
}
func (staticRoutes) Watch(metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil }
func (staticRoutes) IsWatchListSemanticsUnSupported() bool             { return true }

// routed reports whether svc-3's port is served by its route.
func routed(srv *server.Server) bool {
	rc, ok := srv.Resources(server.Route)[xds.ServiceHost("ns-3", "svc-3", 50051)].(*routev3.RouteConfiguration)
	return ok && rc.GetVirtualHosts()[0].GetRoutes()[0].GetName() != "default"
}

// newDiscoveryBenchAgent is an agent following discovery, fed by the
// benchmark through its source rather than a stream, serving into a real
// xDS server.
func newDiscoveryBenchAgent(b *testing.B) (*Agent, *server.Server) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Options{Logger: quiet})
	a, err := New(Options{
		Sources:   fakeSources(fake.NewClientset()),
		Discovery: &DiscoveryOptions{Address: "localhost:1", TLS: &tls.Config{RootCAs: x509.NewCertPool()}},
		Publisher: srv,
		Logger:    quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	return a, srv
}

// benchResources are benchObjects as discovery serves them, with
// benchRoutes when routes is set.
func benchResources(b *testing.B, routes bool) []*pb.Service {
	var in xds.Inputs
	objs := benchObjects()
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			in.Services = append(in.Services, o)
		case *discoveryv1.EndpointSlice:
			in.EndpointSlices = append(in.EndpointSlices, o)
		}
	}
	if routes {
		in.HTTPRoutes = benchRoutes(objs)
	}
	rs, err := resource.FromInputs(in)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

// runBenchAgent starts an agent on kube and routes, serving into a real
// xDS server, and waits for its first configuration.
func runBenchAgent(b *testing.B, kube kubernetes.Interface, routes staticRoutes) (*Agent, *server.Server, func()) {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Options{Logger: quiet})
	src := fakeSources(kube)
	if routes != nil {
		src.HTTPRoutes = func(string) cache.ListerWatcher { return routes }
	}
	a, err := New(Options{
		Sources:   src,
		Publisher: srv,
		Logger:    quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for !a.Synced() {
		time.Sleep(5 * time.Millisecond)
	}
	return a, srv, func() { cancel(); <-done }
}

// BenchmarkApplyResource applies one discovery resource whose endpoints
// changed, the way a response delivers it: decode, turn into objects,
// recompute and publish that Service's assignments.
func BenchmarkApplyResource(b *testing.B) {
	a, srv := newDiscoveryBenchAgent(b)
	rs := benchResources(b, false)
	if err := a.disc.apply(response(b, rs...)); err != nil {
		b.Fatal(err)
	}
	a.use(a.disc, time.Now())
	r := rs[7]
	eps := r.EndpointGroups[0].Endpoints
	before := srv.Stats().Updates[server.Endpoint]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Alternate the last endpoint so every iteration is a real change.
		eps[len(eps)-1].Address = fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255)
		if err := a.disc.apply(response(b, r)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := srv.Stats().Updates[server.Endpoint] - before; got != uint64(b.N) {
		b.Fatalf("%d endpoint resources published for %d resource changes", got, b.N)
	}
}

// response is a discovery response carrying rs.
func response(b testing.TB, rs ...*pb.Service) *discoverygrpc.DeltaDiscoveryResponse {
	resp := &discoverygrpc.DeltaDiscoveryResponse{TypeUrl: resource.TypeURL}
	for _, r := range rs {
		v, err := resource.Version(r)
		if err != nil {
			b.Fatal(err)
		}
		body, err := anypb.New(r)
		if err != nil {
			b.Fatal(err)
		}
		resp.Resources = append(resp.Resources, &discoverygrpc.Resource{Name: resource.Name(r.Namespace, r.Name), Version: v, Resource: body})
	}
	return resp
}

// BenchmarkCacheHeap measures the heap the agent keeps for 1,000 Services
// with 10,000 endpoints: its informer caches and the served xDS resources.
func BenchmarkCacheHeap(b *testing.B) { cacheHeap(b, false) }

// The same with an HTTPRoute on every Service.
func BenchmarkCacheHeapRoutes(b *testing.B) { cacheHeap(b, true) }

func cacheHeap(b *testing.B, withRoutes bool) {
	objs := benchObjects()
	var routes staticRoutes
	if withRoutes {
		routes = benchRoutes(objs)
	}
	var inuse, alloc float64
	for b.Loop() {
		b.StopTimer()
		// The fake API server's own copies exist before the measurement.
		kube := fake.NewClientset(objs...)
		before := heap()
		b.StartTimer()
		a, srv, stop := runBenchAgent(b, kube, routes)
		b.StopTimer()
		after := heap()
		if n := srv.Stats().Endpoints[xds.ClusterName("ns-3", "svc-3", 50051)]; n != benchEndpoints {
			b.Fatalf("svc-3 serves %d endpoints, want %d", n, benchEndpoints)
		}
		if routed(srv) != withRoutes {
			b.Fatalf("svc-3 routed by its HTTPRoute: %v, want %v", routed(srv), withRoutes)
		}
		inuse = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / (1 << 20)
		alloc = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
		runtime.KeepAlive(a)
		stop()
		b.StartTimer()
	}
	b.ReportMetric(inuse, "heapinuse-MiB")
	b.ReportMetric(alloc, "heapalloc-MiB")
}

// BenchmarkDiscoveryHeap measures the heap an agent following discovery
// keeps for 1,000 Services with 10,000 endpoints: the resources as received
// and the served xDS resources.
func BenchmarkDiscoveryHeap(b *testing.B) { discoveryHeap(b, false) }

// The same with an HTTPRoute on every Service.
func BenchmarkDiscoveryHeapRoutes(b *testing.B) { discoveryHeap(b, true) }

func discoveryHeap(b *testing.B, withRoutes bool) {
	rs := benchResources(b, withRoutes)
	var alloc float64
	for b.Loop() {
		b.StopTimer()
		resp := response(b, rs...)
		before := heap()
		b.StartTimer()
		a, srv := newDiscoveryBenchAgent(b)
		if err := a.disc.apply(resp); err != nil {
			b.Fatal(err)
		}
		a.use(a.disc, time.Now())
		b.StopTimer()
		resp = nil
		after := heap()
		if n := srv.Stats().Endpoints[xds.ClusterName("ns-3", "svc-3", 50051)]; n != benchEndpoints {
			b.Fatalf("svc-3 serves %d endpoints, want %d", n, benchEndpoints)
		}
		if routed(srv) != withRoutes {
			b.Fatalf("svc-3 routed by its HTTPRoute: %v, want %v", routed(srv), withRoutes)
		}
		alloc = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
		runtime.KeepAlive(a)
		b.StartTimer()
	}
	b.ReportMetric(alloc, "heapalloc-MiB")
}

func heap() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

// fakeSources reads Services and EndpointSlices from kube, and no TrafficPolicies.
func fakeSources(kube kubernetes.Interface) kubewatch.Sources {
	services, slices := kubeobj.ListWatches(kube)
	return kubewatch.Sources{Services: services, EndpointSlices: slices, Policies: func(string) cache.ListerWatcher { return noPolicies{} }}
}
