package charts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/controlplane"
)

// Once config/gateway-api exists (a kustomize component of the Gateway API
// CRDs), make charts puts its CRDs into tandem-crds, shown with
// gatewayAPI.install and carrying the chart's labels.
func TestGatewayAPICRDsComeFromConfig(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	dir := filepath.Join(fake, GatewayAPIDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    gateway.networking.k8s.io/bundle-version: v1.4.0
    gateway.networking.k8s.io/channel: standard
  name: grpcroutes.gateway.networking.k8s.io
spec:
  group: gateway.networking.k8s.io
  names: {kind: GRPCRoute, plural: grpcroutes, listKind: GRPCRouteList, singular: grpcroute}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: 'A route, {{ not a template }}.'
`
	for name, body := range map[string]string{
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- grpcroutes.yaml\n",
		"grpcroutes.yaml":    crd,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmpl, err := gatewayAPI(fake)
	if err != nil {
		t.Fatal(err)
	}
	// tandem-crds with that template.
	chart := filepath.Join(t.TempDir(), "tandem-crds")
	if err := os.CopyFS(chart, os.DirFS(filepath.Join(root, "charts", "tandem-crds"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chart, "templates", "gateway-api.yaml"), tmpl, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, install := range []bool{false, true} {
		objs, err := Render(chart, Release{Namespace: "tandem-system", Values: map[string]any{"gatewayAPI": map[string]any{"install": install}}})
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, o := range objs {
			if o.GetName() != "grpcroutes.gateway.networking.k8s.io" {
				continue
			}
			found = true
			if o.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" || o.GetAnnotations()["helm.sh/resource-policy"] != "keep" ||
				o.GetAnnotations()["gateway.networking.k8s.io/channel"] != "standard" {
				t.Errorf("labels %v, annotations %v", o.GetLabels(), o.GetAnnotations())
			}
			if b, _ := json.Marshal(o.Object); !strings.Contains(string(b), "A route, {{ not a template }}.") {
				t.Errorf("the CRD's text was changed: %s", b)
			}
		}
		if found != install {
			t.Errorf("gatewayAPI.install=%v: the Gateway API CRD rendered: %v", install, found)
		}
	}
}
