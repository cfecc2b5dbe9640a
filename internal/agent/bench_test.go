package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
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

// runBenchAgent starts an agent on kube, serving into a real xDS server,
// and waits for its first configuration.
func runBenchAgent(b *testing.B, kube kubernetes.Interface) (*Agent, *server.Server, func()) {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Options{Logger: quiet})
	a, err := New(Options{
		Sources:   Sources{Kube: kube, Policies: func(string) cache.ListerWatcher { return noPolicies{} }},
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

// BenchmarkEndpointSliceChange applies one EndpointSlice change the way
// the informer delivers it: the store is updated, then the handler
// recomputes and publishes that Service's assignments.
func BenchmarkEndpointSliceChange(b *testing.B) {
	a, srv, stop := runBenchAgent(b, fake.NewClientset(benchObjects()...))
	defer stop()
	store := a.sets[metav1.NamespaceAll].slices.GetIndexer()
	obj, ok, _ := store.GetByKey("ns-7/svc-7-abcde")
	if !ok {
		b.Fatal("slice ns-7/svc-7-abcde not cached")
	}
	cur := obj.(*discoveryv1.EndpointSlice)
	before := srv.Stats().Updates[server.Endpoint]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		next := cur.DeepCopy()
		// Alternate the last endpoint so every iteration is a real change.
		next.Endpoints[len(next.Endpoints)-1].Addresses = []string{fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255)}
		if err := store.Update(next); err != nil {
			b.Fatal(err)
		}
		a.sliceChanged(cur, next)
		cur = next
	}
	b.StopTimer()
	if got := srv.Stats().Updates[server.Endpoint] - before; got != uint64(b.N) {
		b.Fatalf("%d endpoint resources published for %d slice changes", got, b.N)
	}
}

// BenchmarkCacheHeap measures the heap the agent keeps for 1,000 Services
// with 10,000 endpoints: its informer caches and the served xDS resources.
func BenchmarkCacheHeap(b *testing.B) {
	objs := benchObjects()
	var inuse, alloc float64
	for b.Loop() {
		b.StopTimer()
		// The fake API server's own copies exist before the measurement.
		kube := fake.NewClientset(objs...)
		before := heap()
		b.StartTimer()
		a, srv, stop := runBenchAgent(b, kube)
		b.StopTimer()
		after := heap()
		if n := srv.Stats().Endpoints[xds.ClusterName("ns-3", "svc-3", 50051)]; n != benchEndpoints {
			b.Fatalf("svc-3 serves %d endpoints, want %d", n, benchEndpoints)
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

func heap() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}
