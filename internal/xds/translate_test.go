package xds

import (
	"errors"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

func TestNames(t *testing.T) {
	if got := ClusterName("demo", "greeter", 50051); got != "outbound|50051||greeter.demo.svc.cluster.local" {
		t.Errorf("ClusterName = %q", got)
	}
	if got := ServiceHost("demo", "greeter", 50051); got != "greeter.demo.svc.cluster.local:50051" {
		t.Errorf("ServiceHost = %q", got)
	}
}

func grpcService(ns, name, ip string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}}}
}

func grpcSlice(ns, svc, name string, addrs ...string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(50051))}},
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return sl
}

// A policy whose Service is missing is reported, and blocks nothing.
func TestTranslatePolicyForMissingServiceBlocksNothing(t *testing.T) {
	in := Inputs{
		Services:       []*corev1.Service{grpcService("demo", "greeter", "10.96.0.1"), nil},
		EndpointSlices: []*discoveryv1.EndpointSlice{grpcSlice("demo", "greeter", "g-1", "10.244.0.1"), nil},
		Policies: []*v1alpha1.TrafficPolicy{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ghost"}, Spec: v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "ghost"}}},
			nil,
		},
	}
	for _, mode := range []Mode{Sidecar, Proxyless} {
		res, errs := Translate(in, mode)
		if len(errs) != 1 {
			t.Fatalf("%v: errors %v, want one for the policy", mode, errs)
		}
		var oe *ObjectError
		if !errors.As(errs[0], &oe) || oe.Kind != "TrafficPolicy" || oe.Namespace != "demo" || oe.Name != "ghost" {
			t.Errorf("%v: error %#v does not name the policy", mode, errs[0])
		}
		wantRoutes := map[Mode]int{Sidecar: 1, Proxyless: 0}[mode] // proxyless listeners carry their routes
		if len(res.Routes) != wantRoutes || len(res.Endpoints) != 1 {
			t.Errorf("%v: the Service was not translated: %d routes, %d load assignments", mode, len(res.Routes), len(res.Endpoints))
		}
		wantClusters := map[Mode]int{Sidecar: 2, Proxyless: 1}[mode] // the sidecar adds the passthrough
		if len(res.Clusters) != wantClusters || len(res.Listeners) != 1 {
			t.Errorf("%v: %d clusters, %d listeners", mode, len(res.Clusters), len(res.Listeners))
		}
	}
}

func TestTranslateSortsByName(t *testing.T) {
	in := Inputs{Services: []*corev1.Service{
		grpcService("b", "zeta", "10.96.0.3"), grpcService("a", "zeta", "10.96.0.2"), grpcService("a", "alpha", "10.96.0.1"),
	}}
	res, errs := Translate(in, Proxyless)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []string{"alpha.a.svc.cluster.local:50051", "zeta.a.svc.cluster.local:50051", "zeta.b.svc.cluster.local:50051"}
	for i, l := range res.Listeners {
		if got := l.(*listenerv3.Listener).GetName(); got != want[i] {
			t.Errorf("listener %d is %q, want %q", i, got, want[i])
		}
	}
	res, _ = Translate(in, Sidecar)
	var names []string
	for _, c := range res.Clusters {
		names = append(names, resourceName(c))
	}
	wantClusters := []string{"outbound|50051||alpha.a.svc.cluster.local", "outbound|50051||zeta.a.svc.cluster.local",
		"outbound|50051||zeta.b.svc.cluster.local", "passthrough"}
	if len(names) != len(wantClusters) {
		t.Fatalf("clusters %v", names)
	}
	for i := range names {
		if names[i] != wantClusters[i] {
			t.Errorf("clusters %v, want %v", names, wantClusters)
			break
		}
	}
}

func TestServiceEndpointsReadsOnlyItsOwnSlices(t *testing.T) {
	svc := grpcService("demo", "greeter", "10.96.0.1")
	slices := []*discoveryv1.EndpointSlice{
		grpcSlice("demo", "greeter", "g-2", "10.244.0.2", "10.244.0.1"),
		grpcSlice("demo", "greeter", "g-1", "10.244.0.1"),
		grpcSlice("demo", "other", "o-1", "10.244.0.9"),
		grpcSlice("staging", "greeter", "g-1", "10.244.0.8"),
	}
	clas := ServiceEndpoints(svc, slices, Locality{}, Sidecar)
	if len(clas) != 1 {
		t.Fatalf("%d load assignments, want one per port", len(clas))
	}
	var got []string
	for _, e := range clas[0].GetEndpoints()[0].GetLbEndpoints() {
		got = append(got, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
	}
	if len(got) != 2 || got[0] != "10.244.0.1" || got[1] != "10.244.0.2" {
		t.Errorf("endpoints %v, want 10.244.0.1 and 10.244.0.2", got)
	}

	headless := grpcService("demo", "db", "None")
	if clas := ServiceEndpoints(headless, slices, Locality{}, Sidecar); clas != nil {
		t.Errorf("headless sidecar: %v, want none (its cluster is not EDS)", clas)
	}
	if !EndpointsChangeListeners(headless, Sidecar) || EndpointsChangeListeners(headless, Proxyless) || EndpointsChangeListeners(svc, Sidecar) {
		t.Errorf("EndpointsChangeListeners must be true for a headless Service's sidecar only")
	}
	if clas := ServiceEndpoints(grpcService("demo", "x", ""), slices, Locality{}, Sidecar); clas != nil {
		t.Errorf("a Service Translate leaves out has no endpoints either, got %v", clas)
	}
}
