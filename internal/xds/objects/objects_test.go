package objects

import (
	"strings"
	"testing"
)

const mixed = `# objects of a namespace, as kubectl get -o yaml writes them
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  clusterIP: 10.96.0.1
  ports: [{name: grpc, port: 50051}]
---
# only a comment
---
--- {apiVersion: apps/v1, kind: Deployment, metadata: {name: greeter, namespace: demo}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-1
  labels: {kubernetes.io/service-name: greeter}
addressType: IPv4
endpoints: [{addresses: [10.244.0.1]}]
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: old, namespace: demo}
---
apiVersion: v1
kind: List
items:
- apiVersion: traffic.tandem.dev/v1alpha1
  kind: TrafficPolicy
  metadata: {name: p, namespace: demo}
  spec: {targetRef: {name: greeter}, loadBalancer: {policy: RoundRobin}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm, namespace: demo}
- apiVersion: traffic.tandem.dev/v1alpha1
  kind: TrafficPolicyList
  items:
  - apiVersion: traffic.tandem.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: q, namespace: demo}
    spec: {targetRef: {name: greeter}}
`

func TestRead(t *testing.T) {
	in, skipped, err := Read(strings.NewReader(mixed), "objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Services) != 1 || in.Services[0].Name != "greeter" || in.Services[0].Spec.Ports[0].Port != 50051 {
		t.Errorf("services %+v", in.Services)
	}
	if len(in.EndpointSlices) != 1 || in.EndpointSlices[0].Namespace != DefaultNamespace ||
		in.EndpointSlices[0].Endpoints[0].Addresses[0] != "10.244.0.1" {
		t.Errorf("slices %+v: want one, in the default namespace", in.EndpointSlices)
	}
	if len(in.Policies) != 2 || in.Policies[0].Name != "p" || in.Policies[0].Spec.LoadBalancer.Policy != "RoundRobin" || in.Policies[1].Name != "q" {
		t.Errorf("policies %+v: want p and q from the Lists", in.Policies)
	}
	want := []string{
		"objects.yaml: document 2 (line 12): apps/v1 Deployment demo/greeter: ignored: not a Service, EndpointSlice, TrafficPolicy, HTTPRoute or GRPCRoute",
		"objects.yaml: document 4 (line 22): discovery.k8s.io/v1beta1 EndpointSlice demo/old: ignored: apiVersion discovery.k8s.io/v1beta1 is not supported; use discovery.k8s.io/v1",
		"objects.yaml: document 5 (line 26), item 2: v1 ConfigMap demo/cm: ignored: not a Service, EndpointSlice, TrafficPolicy, HTTPRoute or GRPCRoute",
	}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %v", skipped)
	}
	for i, w := range want {
		if got := skipped[i].String(); got != w {
			t.Errorf("skipped[%d] = %q\n want %q", i, got, w)
		}
	}
}

// Gateway API routes are read at gateway.networking.k8s.io/v1 only, the
// version of the standard-channel CRDs.
func TestReadRoutes(t *testing.T) {
	in, skipped, err := Read(strings.NewReader(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v2, port: 80, weight: 10}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: methods, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: greeter}]
  rules: [{matches: [{method: {service: helloworld.Greeter, method: SayHello}}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: old}
`), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.HTTPRoutes) != 1 || in.HTTPRoutes[0].Namespace != DefaultNamespace || *in.HTTPRoutes[0].Spec.Rules[0].BackendRefs[0].Weight != 10 {
		t.Errorf("HTTPRoutes %+v: want canary, in the default namespace", in.HTTPRoutes)
	}
	if len(in.GRPCRoutes) != 1 || *in.GRPCRoutes[0].Spec.Rules[0].Matches[0].Method.Method != "SayHello" {
		t.Errorf("GRPCRoutes %+v", in.GRPCRoutes)
	}
	want := "routes.yaml: document 3 (line 15): gateway.networking.k8s.io/v1beta1 HTTPRoute old: ignored: apiVersion gateway.networking.k8s.io/v1beta1 is not supported; use gateway.networking.k8s.io/v1"
	if len(skipped) != 1 || skipped[0].String() != want {
		t.Errorf("skipped %v, want %q", skipped, want)
	}
	_, _, err = Read(strings.NewReader("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matchs: []}]}\n"), "typo.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.rules[0].matchs"`) {
		t.Errorf("a misspelt field: error %v, want it named", err)
	}
}

func TestReadJSON(t *testing.T) {
	in, _, err := Read(strings.NewReader(`{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}, "spec": {"clusterIP": "None"}}
]}`), "list.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Services) != 1 || in.Services[0].Spec.ClusterIP != "None" {
		t.Errorf("services %+v", in.Services)
	}
}

func TestReadErrorsNameTheDocument(t *testing.T) {
	cases := []struct{ text, want string }{
		{"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b\n",
			"f.yaml: document 2 (line 5): yaml: line 7: did not find expected ',' or '}'"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {ports: [{name: grpc, prot: 80}]}\n",
			`f.yaml: document 1 (line 1): v1 Service ns/a: unknown field "spec.ports[0].prot"`},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {ports: [{name: grpc, port: eighty}]}\n",
			`f.yaml: document 1 (line 1): v1 Service ns/a: json: cannot unmarshal string into Go struct field`},
		{"---\n- just\n- a list\n", "f.yaml: document 1 (line 2): not a Kubernetes object"},
		{"metadata: {name: a}\n", "f.yaml: document 1 (line 1): not a Kubernetes object: apiVersion and kind must both be set"},
		{"apiVersion: traffic.tandem.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: p}\nspec: {targetRef: {name: a}, timeout: soon}\n",
			"f.yaml: document 1 (line 1): traffic.tandem.dev/v1alpha1 TrafficPolicy p: time: invalid duration"},
	}
	for _, c := range cases {
		_, _, err := Read(strings.NewReader(c.text), "f.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n error %v\n want  %q", c.text, err, c.want)
		}
	}
}

func TestReadEmpty(t *testing.T) {
	in, skipped, err := Read(strings.NewReader("# nothing\n---\n---\n"), "empty.yaml")
	if err != nil || len(skipped) != 0 || len(in.Services)+len(in.EndpointSlices)+len(in.Policies) != 0 {
		t.Errorf("empty file: %+v %v %v", in, skipped, err)
	}
}
