// Package kubeobj builds the Services, EndpointSlices and routes that tests
// and benchmarks feed to the agent, shaped like the ones the Kubernetes
// control plane writes.
package kubeobj

import (
	"context"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Service is a ClusterIP Service with one named TCP port; clusterIP may be
// empty for the API server to allocate one.
func Service(ns, name, portName string, port int32, clusterIP string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: clusterIP,
			Selector:  map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name:       portName,
				Port:       port,
				Protocol:   corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(port),
			}},
		},
	}
}

// EndpointSlice is a slice of Service svc with one named port and a ready
// endpoint per address. The address type follows the first address.
func EndpointSlice(ns, name, svc, portName string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc,
			discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name:     &portName,
			Port:     &port,
			Protocol: ptr(corev1.ProtocolTCP),
		}},
	}
	if len(addrs) > 0 {
		if a, err := netip.ParseAddr(addrs[0]); err == nil && a.Is6() {
			s.AddressType = discoveryv1.AddressTypeIPv6
		}
	}
	SetAddresses(s, addrs...)
	return s
}

// SetAddresses replaces the endpoints of s with one ready endpoint per
// address, each with the pod reference and topology the control plane adds.
func SetAddresses(s *discoveryv1.EndpointSlice, addrs ...string) {
	s.Endpoints = make([]discoveryv1.Endpoint, len(addrs))
	for i, a := range addrs {
		pod := s.Labels[discoveryv1.LabelServiceName] + "-" + a
		s.Endpoints[i] = discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr("node-1"),
			Zone:       ptr("zone-a"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: s.Namespace, Name: pod, UID: "00000000-0000-0000-0000-000000000000"},
		}
	}
}

func ptr[T any](v T) *T { return &v }

// CanaryRoute is an HTTPRoute on Service svc's port as a canary has it:
// requests with x-canary: yes go to next, the rest 90/10 to svc and next.
func CanaryRoute(svc, next *corev1.Service, port int32) *gatewayv1.HTTPRoute {
	ref := func(s *corev1.Service, weight int32) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{Weight: &weight, BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(s.Name), Namespace: new(gatewayv1.Namespace(s.Namespace)), Port: &port}}}
	}
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-canary"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(svc.Name)}}},
			Rules: []gatewayv1.HTTPRouteRule{
				{Matches: []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-canary", Value: "yes"}}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{ref(next, 1)}},
				{BackendRefs: []gatewayv1.HTTPBackendRef{ref(svc, 90), ref(next, 10)}},
			},
		},
	}
}

// ListWatches list and watch the Services and EndpointSlices of a
// clientset (a fake one, in tests), in the form kubewatch.Sources takes.
func ListWatches(kube kubernetes.Interface) (services, slices func(namespace string) cache.ListerWatcher) {
	services = func(ns string) cache.ListerWatcher {
		return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return kube.CoreV1().Services(ns).List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return kube.CoreV1().Services(ns).Watch(ctx, o)
			},
		}, kube) // a fake clientset says it cannot stream lists
	}
	slices = func(ns string) cache.ListerWatcher {
		return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return kube.DiscoveryV1().EndpointSlices(ns).List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return kube.DiscoveryV1().EndpointSlices(ns).Watch(ctx, o)
			},
		}, kube)
	}
	return services, slices
}
