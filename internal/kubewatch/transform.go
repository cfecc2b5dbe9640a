package kubewatch

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// strip keeps only what translation reads, before an object is cached: the
// informers hold every Service and EndpointSlice of the cluster, and managed
// fields, last-applied annotations, statuses and per-endpoint pod details
// are most of their bytes. Fresh objects are built rather than fields
// cleared, so the decoded originals become garbage at once. It must be
// idempotent: client-go may pass an already stripped object again.
func strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return &corev1.Service{ObjectMeta: stripMeta(o.ObjectMeta, o.Labels), Spec: o.Spec}, nil
	case *discoveryv1.EndpointSlice:
		out := &discoveryv1.EndpointSlice{
			ObjectMeta:  stripMeta(o.ObjectMeta, nil),
			AddressType: o.AddressType,
			Ports:       o.Ports,
			Endpoints:   make([]discoveryv1.Endpoint, len(o.Endpoints)),
		}
		if name, ok := o.Labels[discoveryv1.LabelServiceName]; ok {
			out.Labels = map[string]string{discoveryv1.LabelServiceName: name}
		}
		for i, e := range o.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{
				Addresses:  e.Addresses,
				Conditions: e.Conditions,
				Hostname:   e.Hostname,
				NodeName:   e.NodeName,
				Zone:       e.Zone,
				Hints:      e.Hints,
			}
			// The owner pairs a dual-stack pod's two addresses.
			if r := e.TargetRef; r != nil {
				out.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
			}
		}
		return out, nil
	case *v1alpha1.TrafficPolicy:
		return &v1alpha1.TrafficPolicy{ObjectMeta: stripMeta(o.ObjectMeta, nil), Spec: o.Spec}, nil
	case *gatewayv1.HTTPRoute:
		return &gatewayv1.HTTPRoute{ObjectMeta: stripMeta(o.ObjectMeta, nil), Spec: o.Spec}, nil
	case *gatewayv1.GRPCRoute:
		return &gatewayv1.GRPCRoute{ObjectMeta: stripMeta(o.ObjectMeta, nil), Spec: o.Spec}, nil
	}
	// Tombstones and anything unexpected pass unchanged.
	return obj, nil
}

func stripMeta(m metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		CreationTimestamp: m.CreationTimestamp, // the older of two policies or routes wins
		DeletionTimestamp: m.DeletionTimestamp,
		Labels:            labels,
	}
}
