package charts_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// clusterScoped are the kinds the charts make that have no namespace.
var clusterScoped = map[string]bool{
	"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
	"MutatingWebhookConfiguration": true, "MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

// Every render honours --namespace: namespaced objects are in it, and
// everything that names the injector's namespace (RBAC subjects, the
// webhook's Service, the selectors that spare it, the policies' params,
// discovery's address and certificate names) names it; config/'s
// tandem-system appears nowhere.
func TestRendersHonourTheNamespace(t *testing.T) {
	const ns = "mesh-x"
	for _, c := range renderCases {
		t.Run(c.Name, func(t *testing.T) {
			objs := render(t, c.Chart, ns, valuesOf(t, c))
			for _, o := range objs {
				if clusterScoped[o.GetKind()] != (o.GetNamespace() == "") {
					t.Errorf("%s in namespace %q", key(o), o.GetNamespace())
				}
				if !clusterScoped[o.GetKind()] && o.GetNamespace() != ns {
					t.Errorf("%s not in the release's namespace", key(o))
				}
				b, _ := json.Marshal(o.Object)
				if strings.Contains(string(b), "tandem-system") {
					t.Errorf("%s names tandem-system, not the release's namespace", key(o))
				}
			}
			text := string(toYAML(t, objectsOf(objs)))
			for _, want := range wantNamespaceRefs(t, c) {
				if !strings.Contains(text, want) {
					t.Errorf("the render lacks %q", want)
				}
			}
		})
	}
}

// wantNamespaceRefs are fragments each render must hold, naming mesh-x.
func wantNamespaceRefs(t testing.TB, c renderCase) []string {
	switch c.Chart {
	case "tandem-cni":
		return []string{"- kind: ServiceAccount\n  name: tandem-cni\n  namespace: mesh-x\n"}
	case "tandem":
	default:
		return nil
	}
	refs := []string{"- kind: ServiceAccount\n  name: tandem-injector\n  namespace: mesh-x\n", "fieldPath: metadata.namespace"}
	v := valuesOf(t, c)
	inj, _ := v["injection"].(map[string]any)
	if inj["mode"] == "policy" {
		refs = append(refs, "    name: tandem-injection-defaults\n    namespace: mesh-x\n", "- kube-node-lease\n        - mesh-x\n")
	} else {
		refs = append(refs, "    service:\n      name: tandem-webhook\n      namespace: mesh-x\n", "- kube-node-lease\n      - mesh-x\n")
	}
	if cm, _ := v["certManager"].(map[string]any); cm["enabled"] == true {
		refs = append(refs, "- tandem-discovery.mesh-x.svc\n")
	}
	return refs
}

func objectsOf(objs []*unstructured.Unstructured) []map[string]any {
	var out []map[string]any
	for _, o := range objs {
		out = append(out, o.Object)
	}
	return out
}

// Object names and specs do not depend on the release's name: only
// Helm's instance label does.
func TestRendersDoNotDependOnTheReleaseName(t *testing.T) {
	for _, c := range renderCases {
		a := render(t, c.Chart, "tandem-system", valuesOf(t, c))
		b, err := renderAs(t, c, "another-release")
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Fatalf("%s: %d and %d objects", c.Name, len(a), len(b))
		}
		for i := range a {
			x, y := plain(t, a[i], true), plain(t, b[i], true)
			if d := cmp.Diff(x, y); d != "" {
				t.Errorf("%s: %s depends on the release name:\n%s", c.Name, key(a[i]), d)
			}
		}
	}
}
