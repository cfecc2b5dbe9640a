// Package v1alpha1 holds the traffic.tandem.dev/v1alpha1 API: TrafficPolicy,
// the per-Service load-balancing policy the agent turns into Envoy and gRPC
// xDS configuration.
// +kubebuilder:object:generate=true
// +groupName=traffic.tandem.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of the types in this package.
	GroupVersion = schema.GroupVersion{Group: "traffic.tandem.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
