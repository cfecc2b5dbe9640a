package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/policytest"
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

	type validationCase struct {
		name string
		spec string
		// want are substrings of the API server's refusal; none means accepted.
		want []string
	}
	cases := []validationCase{
		{name: "sample", spec: samplePolicy},
		{name: "minimal", spec: `targetRef: {name: cart}`},
		{name: "ring-hash-source-ip", spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {sourceIP: true}}}`},
		{name: "maglev-header", spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev, hashOn: {header: x-session}}}`},
		{name: "least-request-default-policy", spec: `{targetRef: {name: cart}, loadBalancer: {slowStart: 1m30s}}`},
		{name: "fractional-duration", spec: `{targetRef: {name: cart}, timeout: 1.5s}`},
	}
	// The invalid cases are the translator's too (internal/xds).
	for _, c := range policytest.Invalids {
		cases = append(cases, validationCase{c.Name, c.Spec, c.CRD})
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
