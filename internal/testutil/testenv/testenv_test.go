package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The API server that tests run against must be the release whose client
// libraries the product is built with.
func TestControlPlaneVersionMatchesClientLibraries(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	api := requiredVersion(t, filepath.Join(root, "go.mod"), "k8s.io/api")
	kube := requiredVersion(t, filepath.Join(root, "hack", "envtest", "kube", "go.mod"), "k8s.io/kubernetes")
	// k8s.io/api v0.X.Y pairs with Kubernetes v1.X.Y.
	if want := "v1." + strings.TrimPrefix(api, "v0."); kube != want {
		t.Fatalf("hack/envtest/kube builds k8s.io/kubernetes %s; k8s.io/api %s needs %s", kube, api, want)
	}
}

// requiredVersion reads the version a go.mod requires of module, in either
// the one-line or the block form of require.
func requiredVersion(t *testing.T, goMod, module string) string {
	t.Helper()
	data, err := os.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == module && strings.HasPrefix(f[1], "v") {
			return f[1]
		}
	}
	t.Fatalf("%s does not require %s", goMod, module)
	return ""
}

func TestAPIServerStoresLabeledNamespace(t *testing.T) {
	_, cfg := Start(t, Options{})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "greeter",
		Labels: map[string]string{"tandem.dev/inject": "enabled"},
	}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	got, err := cs.CoreV1().Namespaces().Get(ctx, "greeter", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get namespace: %v", err)
	}
	if v := got.Labels["tandem.dev/inject"]; v != "enabled" {
		t.Fatalf("label tandem.dev/inject = %q, want enabled", v)
	}
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "tandem.dev/inject=enabled"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "greeter" {
		t.Fatalf("label selector found %d namespaces, want just greeter", len(list.Items))
	}
	ver, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if ver.Major != "1" || ver.Minor == "" {
		t.Fatalf("server version %+v: the source-built API server must report its release", ver)
	}
}
