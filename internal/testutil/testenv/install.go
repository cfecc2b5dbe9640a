package testenv

import (
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-mesh/tandem/internal/manifests"
)

// Images of the installs DeployOverlay builds.
const (
	OverlayInjectorImage = "registry.local:5000/tandem/injector:v9"
	OverlayAgentImage    = "registry.local:5000/tandem/agent:v9"
	OverlayProxyImage    = "envoyproxy/envoy:v1.40.1"
)

// DeployOverlay writes the overlay `make deploy` writes, with the images
// above and modeArgs ([default|policy] [init|cni]), and builds it: the
// objects a user installs.
func DeployOverlay(t testing.TB, modeArgs ...string) []*unstructured.Unstructured {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := append([]string{dir, OverlayInjectorImage, OverlayAgentImage, OverlayProxyImage}, modeArgs...)
	if out, err := exec.Command(filepath.Join(root, "hack", "deploy-overlay.sh"), args...).CombinedOutput(); err != nil {
		t.Fatalf("deploy-overlay.sh %v: %v\n%s", modeArgs, err, out)
	}
	objs, err := manifests.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
