package kubewatch

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
)

func withNoise(m *metav1.ObjectMeta) {
	m.ResourceVersion = "42"
	m.UID = "u-1"
	m.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	m.OwnerReferences = []metav1.OwnerReference{{Kind: "Service", Name: "owner"}}
	m.Finalizers = []string{"example.com/finalizer"}
}

func TestStripService(t *testing.T) {
	in := kubeobj.Service("ns", "cart", "grpc", 50051, "10.0.0.7")
	withNoise(&in.ObjectMeta)
	in.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}
	out, err := strip(in)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Service)
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cart", UID: "u-1", ResourceVersion: "42", Labels: map[string]string{"app": "cart"}},
		Spec:       in.Spec,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("strip(Service) =\n%+v\nwant\n%+v", got, want)
	}
	again, _ := strip(got)
	if !reflect.DeepEqual(again, got) {
		t.Fatal("strip is not idempotent on Services")
	}
}

func TestStripEndpointSlice(t *testing.T) {
	in := kubeobj.EndpointSlice("ns", "cart-abc", "cart", "grpc", 50051, "198.51.100.1", "198.51.100.2")
	withNoise(&in.ObjectMeta)
	in.Endpoints[0].Hostname = ptrTo("cart-0")
	in.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}}
	in.Endpoints[0].NodeName = ptrTo("node-a")
	in.Endpoints[0].DeprecatedTopology = map[string]string{"kubernetes.io/hostname": "node-a"}
	out, err := strip(in)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*discoveryv1.EndpointSlice)
	if got.Name != "cart-abc" || got.Namespace != "ns" || got.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", got.ObjectMeta)
	}
	if !reflect.DeepEqual(got.Labels, map[string]string{discoveryv1.LabelServiceName: "cart"}) {
		t.Errorf("labels = %v, want only %s", got.Labels, discoveryv1.LabelServiceName)
	}
	if got.Annotations != nil || got.ManagedFields != nil || got.OwnerReferences != nil {
		t.Errorf("metadata noise kept: %+v", got.ObjectMeta)
	}
	if got.AddressType != discoveryv1.AddressTypeIPv4 || !reflect.DeepEqual(got.Ports, in.Ports) {
		t.Errorf("address type or ports changed: %v %+v", got.AddressType, got.Ports)
	}
	if len(got.Endpoints) != 2 {
		t.Fatalf("%d endpoints, want 2", len(got.Endpoints))
	}
	e := got.Endpoints[0]
	if !reflect.DeepEqual(e.Addresses, []string{"198.51.100.1"}) || *e.Conditions.Ready != true ||
		*e.Hostname != "cart-0" || *e.Zone != "zone-a" {
		t.Errorf("endpoint lost what translation reads: %+v", e)
	}
	// internalTrafficPolicy Local reads the node, topology the hints.
	if e.NodeName == nil || *e.NodeName != "node-a" || !reflect.DeepEqual(e.Hints, in.Endpoints[0].Hints) {
		t.Errorf("endpoint lost its node or hints: %+v", e)
	}
	if e.DeprecatedTopology != nil {
		t.Errorf("endpoint keeps deprecatedTopology: %+v", e)
	}
	// The owner pairs dual-stack addresses; its UID and versions are not read.
	if want := (&corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: in.Endpoints[0].TargetRef.Name}); !reflect.DeepEqual(e.TargetRef, want) {
		t.Errorf("endpoint owner = %+v, want %+v", e.TargetRef, want)
	}
	again, _ := strip(got)
	if !reflect.DeepEqual(again, got) {
		t.Fatal("strip is not idempotent on EndpointSlices")
	}
}

func TestStripPolicyAndTombstone(t *testing.T) {
	p := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Generation: 3, CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec:       v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "cart"}},
		Status:     v1alpha1.TrafficPolicyStatus{ObservedGeneration: 3},
	}
	withNoise(&p.ObjectMeta)
	out, _ := strip(p)
	got := out.(*v1alpha1.TrafficPolicy)
	if got.Spec.TargetRef.Name != "cart" || got.Generation != 3 || got.Status.ObservedGeneration != 0 || got.Annotations != nil {
		t.Errorf("strip(TrafficPolicy) = %+v", got)
	}
	if !got.CreationTimestamp.Equal(&p.CreationTimestamp) {
		t.Errorf("creation time %v lost; the older of two policies wins", p.CreationTimestamp)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/x", Obj: p}
	if out, _ := strip(tomb); !reflect.DeepEqual(out, tomb) {
		t.Error("a tombstone was changed")
	}
}

func ptrTo[T any](v T) *T { return &v }
