package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LoadBalancerPolicy names how requests are spread over a Service's ready endpoints.
// +kubebuilder:validation:Enum=RoundRobin;LeastRequest;Random;RingHash;Maglev
type LoadBalancerPolicy string

const (
	RoundRobin   LoadBalancerPolicy = "RoundRobin"
	LeastRequest LoadBalancerPolicy = "LeastRequest"
	Random       LoadBalancerPolicy = "Random"
	RingHash     LoadBalancerPolicy = "RingHash"
	Maglev       LoadBalancerPolicy = "Maglev"
)

// Condition types set on TrafficPolicy status.
const (
	// ConditionAccepted is True when the policy is valid and applied by agents.
	ConditionAccepted = "Accepted"
	// ConditionTargetFound is True when the Service named by targetRef exists.
	ConditionTargetFound = "TargetFound"
)

// TargetRef names the Service, in the policy's namespace, a policy applies to.
type TargetRef struct {
	// Name of the Service.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Port restricts the policy to one Service port; all ports when unset.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`
}

// LeastRequestConfig tunes the LeastRequest policy.
type LeastRequestConfig struct {
	// ChoiceCount is how many random endpoints are compared per request
	// (power of N choices). Default 2.
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=100
	// +optional
	ChoiceCount *int32 `json:"choiceCount,omitempty"`
}

// HashOn selects the request property that consistent hashing keys on.
// Exactly one field must be set.
// +kubebuilder:validation:XValidation:rule="(has(self.header) ? 1 : 0) + (has(self.sourceIP) && self.sourceIP ? 1 : 0) == 1",message="hashOn needs exactly one of header (a header name) or sourceIP: true"
type HashOn struct {
	// Header is the name of the request header whose value is hashed.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+\-.^_|~]+$`
	// +optional
	Header string `json:"header,omitempty"`

	// SourceIP hashes the client's address.
	// +optional
	SourceIP bool `json:"sourceIP,omitempty"`
}

// LoadBalancer chooses the balancing policy and its settings. Settings that
// belong to another policy than the selected one are ignored, so switching
// policy is a one-line change.
// +kubebuilder:validation:XValidation:rule="!(self.policy in ['RingHash', 'Maglev']) || has(self.hashOn)",message="policy RingHash and Maglev need hashOn (header or sourceIP)"
type LoadBalancer struct {
	// Policy is one of RoundRobin, LeastRequest, Random, RingHash, Maglev.
	// Proxyless gRPC clients have no Random and no Maglev: they use
	// RoundRobin and RingHash instead.
	// +kubebuilder:default=LeastRequest
	// +optional
	Policy LoadBalancerPolicy `json:"policy,omitempty"`

	// LeastRequest tunes policy LeastRequest.
	// +optional
	LeastRequest *LeastRequestConfig `json:"leastRequest,omitempty"`

	// HashOn is required by RingHash and Maglev and ignored by the others.
	// Proxyless gRPC clients hash sourceIP as their channel's identity.
	// +optional
	HashOn *HashOn `json:"hashOn,omitempty"`

	// SlowStart ramps traffic to a new endpoint up over this window
	// (RoundRobin and LeastRequest only; ignored by proxyless gRPC clients).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"
	// +optional
	SlowStart *metav1.Duration `json:"slowStart,omitempty"`
}

// OutlierDetection ejects endpoints that keep failing.
type OutlierDetection struct {
	// Consecutive5xx is how many consecutive 5xx (or gRPC failure) responses
	// eject an endpoint.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Consecutive5xx *int32 `json:"consecutive5xx,omitempty"`

	// Interval between ejection sweeps.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// BaseEjectionTime is how long an endpoint stays ejected the first time.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"
	// +optional
	BaseEjectionTime *metav1.Duration `json:"baseEjectionTime,omitempty"`

	// MaxEjectionPercent caps the share of endpoints ejected at once.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// Retries re-sends failed requests to another endpoint.
type Retries struct {
	// Attempts is the number of retries after the first try.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts"`

	// RetryOn is a comma-separated list of Envoy retry conditions: HTTP ones
	// (5xx, gateway-error, reset, connect-failure, retriable-4xx,
	// refused-stream) and gRPC status ones (cancelled, deadline-exceeded,
	// internal, resource-exhausted, unavailable). Default
	// "connect-failure,refused-stream,unavailable": failures where the
	// request did not reach the application, or it asked for a retry.
	// Proxyless gRPC clients act on the gRPC status conditions only.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.split(',').all(c, c in ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'refused-stream', 'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'])",message="has an unknown retry condition; retryOn is a comma-separated list (no spaces) of 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable"
	// +optional
	RetryOn string `json:"retryOn,omitempty"`

	// PerTryTimeout bounds each attempt. An HTTPRoute rule's
	// timeouts.backendRequest wins where it sets one.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"
	// +optional
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
}

// TrafficPolicySpec is the desired balancing behaviour for one Service.
type TrafficPolicySpec struct {
	// TargetRef names the Service this policy applies to.
	TargetRef TargetRef `json:"targetRef"`

	// LoadBalancer selects the balancing policy; LeastRequest when unset.
	// +optional
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`

	// OutlierDetection ejects failing endpoints.
	// +optional
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`

	// Retries re-sends failed requests.
	// +optional
	Retries *Retries `json:"retries,omitempty"`

	// Timeout bounds a whole request, retries included. An HTTPRoute rule's
	// timeouts win where they set one (the policy's status names the
	// routes).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// MaxRequestsPerConnection closes an upstream connection after this many
	// requests, so long-lived clients keep rebalancing.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxRequestsPerConnection *int32 `json:"maxRequestsPerConnection,omitempty"`
}

// TrafficPolicyStatus is set by the injector's controller.
type TrafficPolicyStatus struct {
	// ObservedGeneration is the spec generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted and TargetFound.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrafficPolicy sets how Tandem's sidecars balance requests to one Service.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.loadBalancer.policy`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrafficPolicySpec   `json:"spec"`
	Status TrafficPolicyStatus `json:"status,omitempty"`
}

// TrafficPolicyList is a list of TrafficPolicy.
// +kubebuilder:object:root=true
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TrafficPolicy{}, &TrafficPolicyList{})
}
