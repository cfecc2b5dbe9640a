package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// The sample policy: every knob at once. Settings of policies other
// than the selected one (leastRequest, slowStart under RingHash) are allowed
// and ignored, so switching policy is a one-line change.
const samplePolicy = `
targetRef: {name: cart, port: 8443}
loadBalancer:
  policy: RingHash
  leastRequest: {choiceCount: 2}
  hashOn: {header: x-user-id}
  slowStart: 30s
outlierDetection: {consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
retries: {attempts: 3, retryOn: "unavailable,reset", perTryTimeout: 1s}
timeout: 5s
maxRequestsPerConnection: 1000
`

// The API server must refuse invalid TrafficPolicies when they are applied,
// with a message that names the field and says what is accepted.
func TestTrafficPolicyValidation(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	c := testenv.Client(t, cfg)
	ctx := context.Background()

	cases := []struct {
		name string
		spec string
		// want are substrings of the API server's refusal; none means accepted.
		want []string
	}{
		{name: "sample", spec: samplePolicy},
		{name: "minimal", spec: `targetRef: {name: cart}`},
		{name: "ring-hash-source-ip", spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {sourceIP: true}}}`},
		{name: "maglev-header", spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev, hashOn: {header: x-session}}}`},
		{name: "least-request-default-policy", spec: `{targetRef: {name: cart}, loadBalancer: {slowStart: 1m30s}}`},
		{name: "fractional-duration", spec: `{targetRef: {name: cart}, timeout: 1.5s}`},
		{
			name: "ring-hash-without-hash-on",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash}}`,
			want: []string{"spec.loadBalancer", "policy RingHash and Maglev need hashOn (header or sourceIP)"},
		},
		{
			name: "maglev-without-hash-on",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev}}`,
			want: []string{"spec.loadBalancer", "policy RingHash and Maglev need hashOn"},
		},
		{
			name: "unknown-policy",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: Fastest}}`,
			want: []string{"spec.loadBalancer.policy", `Unsupported value: "Fastest"`, `"RoundRobin", "LeastRequest", "Random", "RingHash", "Maglev"`},
		},
		{
			name: "negative-consecutive-5xx",
			spec: `{targetRef: {name: cart}, outlierDetection: {consecutive5xx: -1}}`,
			want: []string{"spec.outlierDetection.consecutive5xx", "-1", "should be greater than or equal to 1"},
		},
		{
			name: "negative-attempts",
			spec: `{targetRef: {name: cart}, retries: {attempts: -2}}`,
			want: []string{"spec.retries.attempts", "should be greater than or equal to 0"},
		},
		{
			name: "choice-count-one",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: LeastRequest, leastRequest: {choiceCount: 1}}}`,
			want: []string{"spec.loadBalancer.leastRequest.choiceCount", "should be greater than or equal to 2"},
		},
		{
			name: "negative-max-requests-per-connection",
			spec: `{targetRef: {name: cart}, maxRequestsPerConnection: -5}`,
			want: []string{"spec.maxRequestsPerConnection", "should be greater than or equal to 1"},
		},
		{
			name: "max-ejection-percent-over-100",
			spec: `{targetRef: {name: cart}, outlierDetection: {maxEjectionPercent: 150}}`,
			want: []string{"spec.outlierDetection.maxEjectionPercent", "should be less than or equal to 100"},
		},
		{
			name: "bad-duration-words",
			spec: `{targetRef: {name: cart}, timeout: 5 seconds}`,
			want: []string{"spec.timeout", "must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"},
		},
		{
			name: "bad-duration-no-unit",
			spec: `{targetRef: {name: cart}, retries: {attempts: 2, perTryTimeout: "100"}}`,
			want: []string{"spec.retries.perTryTimeout", "must be a positive duration"},
		},
		{
			name: "negative-duration",
			spec: `{targetRef: {name: cart}, outlierDetection: {interval: -10s}}`,
			want: []string{"spec.outlierDetection.interval", "must be a positive duration"},
		},
		{
			name: "zero-duration",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RoundRobin, slowStart: 0s}}`,
			want: []string{"spec.loadBalancer.slowStart", "must be a positive duration"},
		},
		{
			name: "bad-retry-on",
			spec: `{targetRef: {name: cart}, retries: {attempts: 2, retryOn: "unavailable,5xx,timeout,oops"}}`,
			want: []string{"spec.retries.retryOn", `Invalid value: "unavailable,5xx,timeout,oops": has an unknown retry condition`, "comma-separated list (no spaces) of 5xx, gateway-error, reset"},
		},
		{
			name: "retry-on-with-space",
			spec: `{targetRef: {name: cart}, retries: {attempts: 2, retryOn: "reset, unavailable"}}`,
			want: []string{"spec.retries.retryOn", `Invalid value: "reset, unavailable": has an unknown retry condition`},
		},
		{
			name: "hash-on-header-and-source-ip",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {header: x-user, sourceIP: true}}}`,
			want: []string{"spec.loadBalancer.hashOn", "hashOn needs exactly one of header (a header name) or sourceIP: true"},
		},
		{
			name: "hash-on-empty",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {}}}`,
			want: []string{"spec.loadBalancer.hashOn", "hashOn needs exactly one of header"},
		},
		{
			name: "hash-on-bad-header-name",
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {header: "x user"}}}`,
			want: []string{"spec.loadBalancer.hashOn.header", "should match"},
		},
		{
			name: "missing-target",
			spec: `{loadBalancer: {policy: RoundRobin}}`,
			want: []string{"spec.targetRef", "Required value"},
		},
		{
			name: "target-port-zero",
			spec: `{targetRef: {name: cart, port: 0}}`,
			want: []string{"spec.targetRef.port", "should be greater than or equal to 1"},
		},
		{
			name: "target-name-not-a-service-name",
			spec: `{targetRef: {name: Cart_1}}`,
			want: []string{"spec.targetRef.name", "should match"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var spec map[string]any
			if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatalf("test spec: %v", err)
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": v1alpha1.GroupVersion.String(),
				"kind":       "TrafficPolicy",
				"metadata":   map[string]any{"name": tc.name, "namespace": "default"},
				"spec":       spec,
			}}
			err := c.Create(ctx, obj)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid policy refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid policy accepted; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err.Error(), w)
				}
			}
		})
	}

	// Defaulting: a loadBalancer without policy is stored as LeastRequest.
	var got v1alpha1.TrafficPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "least-request-default-policy"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.LoadBalancer == nil || got.Spec.LoadBalancer.Policy != v1alpha1.LeastRequest {
		t.Fatalf("stored loadBalancer %+v, want policy defaulted to LeastRequest", got.Spec.LoadBalancer)
	}
	// The sample round-trips into the Go types with its values intact.
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "sample"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Retries == nil || got.Spec.Retries.PerTryTimeout.Duration.String() != "1s" || got.Spec.Timeout.Duration.String() != "5s" {
		t.Fatalf("sample stored as %+v", got.Spec)
	}
}
