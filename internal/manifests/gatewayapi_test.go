package manifests_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// config/gateway-api holds the standard-channel HTTPRoute and GRPCRoute
// CRDs of the sigs.k8s.io/gateway-api go.mod pins, byte for byte (`make
// gateway-api-crds` copies them), and both installs include them.
func TestGatewayAPICRDsAreTheModules(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/gateway-api: %v", err)
	}
	module := strings.TrimSpace(string(out))
	for _, kind := range []string{"httproutes", "grpcroutes"} {
		name := "gateway.networking.k8s.io_" + kind + ".yaml"
		want, err := os.ReadFile(filepath.Join(module, "config", "crd", "standard", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, "config", "gateway-api", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("config/gateway-api/%s differs from the module's standard channel CRD: run make gateway-api-crds", name)
		}
	}
	for _, install := range []string{"default", "policy"} {
		objs, err := manifests.Build(filepath.Join(root, "config", install))
		if err != nil {
			t.Fatal(err)
		}
		var crds []string
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o.GetName())
			}
		}
		for _, want := range []string{"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"} {
			if !slices.Contains(crds, want) {
				t.Errorf("config/%s installs the CRDs %v, not %s", install, crds, want)
			}
		}
	}
}
