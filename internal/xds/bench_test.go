package xds_test

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// cluster builds n gRPC Services with perService ready endpoints each, in
// one slice per Service, and a TrafficPolicy for every tenth Service.
func benchCluster(n, perService int) xds.Inputs {
	var in xds.Inputs
	for i := 0; i < n; i++ {
		ns, name := fmt.Sprintf("ns-%d", i%20), fmt.Sprintf("svc-%d", i)
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
				Ports:     []corev1.ServicePort{{Name: "grpc", Port: 50051}},
			},
		})
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("grpc"), Port: new(int32(50051))}},
		}
		for j := 0; j < perService; j++ {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 100+i/250, i%250, j+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", name, j)},
			})
		}
		in.EndpointSlices = append(in.EndpointSlices, sl)
		if i%10 == 0 {
			in.Policies = append(in.Policies, &v1alpha1.TrafficPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: v1alpha1.TrafficPolicySpec{
					TargetRef:    v1alpha1.TargetRef{Name: name},
					LoadBalancer: &v1alpha1.LoadBalancer{Policy: v1alpha1.RingHash, HashOn: &v1alpha1.HashOn{Header: "x-user"}},
					Retries:      &v1alpha1.Retries{Attempts: 2},
				},
			})
		}
	}
	return in
}

// withRoutes adds one HTTPRoute per Service of in, as a canary has them:
// requests with x-canary: yes go to the next Service (in another
// namespace), the rest 90/10 to the Service itself and the next one.
func withRoutes(in xds.Inputs) xds.Inputs {
	for i, svc := range in.Services {
		in.HTTPRoutes = append(in.HTTPRoutes, kubeobj.CanaryRoute(svc, in.Services[(i+1)%len(in.Services)], 50051))
	}
	return in
}

// Full translation of 1,000 Services × 10 endpoints (goal: ≤ 50 ms).
func BenchmarkTranslate1000x10(b *testing.B) { translate(b, benchCluster(1000, 10)) }

// The same with 1,000 HTTPRoutes, one on each Service, each with two rules
// and three backends.
func BenchmarkTranslate1000x10Routes(b *testing.B) { translate(b, withRoutes(benchCluster(1000, 10))) }

func translate(b *testing.B, in xds.Inputs) {
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, errs := xds.Translate(in, mode)
				if len(errs) > 0 || len(res.Endpoints) != 1000 {
					b.Fatalf("%d errors (%v), %d load assignments", len(errs), errs, len(res.Endpoints))
				}
			}
		})
	}
}

// The incremental path for one EndpointSlice change: the load assignments
// of one Service, from all slices of the cluster (goal: ≤ 1 ms).
func BenchmarkServiceEndpoints(b *testing.B) {
	in := benchCluster(1000, 10)
	svc := in.Services[500]
	own := []*discoveryv1.EndpointSlice{in.EndpointSlices[500]}
	b.Run("own-slices", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if cla := xds.ServiceEndpoints(svc, own, xds.Locality{}, xds.Sidecar); len(cla) != 1 {
				b.Fatal(len(cla))
			}
		}
	})
	b.Run("all-slices", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if cla := xds.ServiceEndpoints(svc, in.EndpointSlices, xds.Locality{}, xds.Sidecar); len(cla) != 1 {
				b.Fatal(len(cla))
			}
		}
	})
}

// Validating what the incremental path produces, as the server does
// before publishing.
func BenchmarkValidateLoadAssignment(b *testing.B) {
	in := benchCluster(1, 10)
	cla := xds.ServiceEndpoints(in.Services[0], in.EndpointSlices, xds.Locality{}, xds.Sidecar)[0]
	b.ReportAllocs()
	for b.Loop() {
		if err := xds.Validate(cla); err != nil {
			b.Fatal(err)
		}
	}
}

// The heap the translated resources of 1,000 Services × 10 endpoints keep
// alive, as a cache holding them would (reported as MiB-retained).
func BenchmarkTranslateRetainedHeap(b *testing.B) {
	retainedHeap(b, benchCluster(1000, 10))
}

// The same with 1,000 HTTPRoutes.
func BenchmarkTranslateRetainedHeapRoutes(b *testing.B) {
	retainedHeap(b, withRoutes(benchCluster(1000, 10)))
}

func retainedHeap(b *testing.B, in xds.Inputs) {
	var res *xds.Resources
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res, _ = xds.Translate(in, xds.Sidecar)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB-retained")
		runtime.KeepAlive(res)
		res = nil
	}
}
