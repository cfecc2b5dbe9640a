package charts_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/charts"
	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// helmLabels are the labels the charts add to every object's own; nothing
// else may differ from config/.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

func root(t testing.TB) string {
	t.Helper()
	r, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// render renders charts/name into namespace with values.
func render(t testing.TB, name, namespace string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := charts.Render(filepath.Join(root(t), "charts", name), charts.Release{Name: "r-" + name, Namespace: namespace, Values: values})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderAs renders case c under another release name.
func renderAs(t testing.TB, c renderCase, release string) ([]*unstructured.Unstructured, error) {
	return charts.Render(filepath.Join(root(t), "charts", c.Chart), charts.Release{Name: release, Namespace: "tandem-system", Values: valuesOf(t, c)})
}

// values parses YAML values as -f would give them.
func values(t testing.TB, y string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func build(t testing.TB, kustomization string) []*unstructured.Unstructured {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func rel(t testing.TB, to string) string {
	t.Helper()
	r, err := filepath.Rel(t.TempDir(), filepath.Join(root(t), to))
	if err != nil {
		t.Fatal(err)
	}
	// TempDir's siblings share its parent: one level up from a new one.
	return r
}

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// plain returns the object as JSON values (float64 numbers), with Helm's
// labels and resource policy taken out once they are checked to be there.
func plain(t testing.TB, o *unstructured.Unstructured, fromChart bool) map[string]any {
	t.Helper()
	b, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	prune(m)
	if !fromChart {
		return m
	}
	md := m["metadata"].(map[string]any)
	labels, _ := md["labels"].(map[string]any)
	for _, l := range helmLabels {
		if _, ok := labels[l]; !ok {
			t.Errorf("%s lacks Helm's label %s", key(o), l)
		}
		delete(labels, l)
	}
	if len(labels) == 0 {
		delete(md, "labels")
	}
	if ann, ok := md["annotations"].(map[string]any); ok {
		delete(ann, "helm.sh/resource-policy")
		if len(ann) == 0 {
			delete(md, "annotations")
		}
	}
	return m
}

// prune removes empty lists (as kustomize's $patch: delete leaves them),
// which the API server stores as absent.
func prune(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case map[string]any:
			prune(v)
		case []any:
			for _, e := range v {
				if e, ok := e.(map[string]any); ok {
					prune(e)
				}
			}
			if len(v) == 0 {
				delete(m, k)
			}
		}
	}
}

// sameObjects fails unless the charts' objects are config's, but for
// Helm's labels and the Namespace, which Helm's --create-namespace makes.
func sameObjects(t *testing.T, fromCharts, fromConfig []*unstructured.Unstructured) {
	t.Helper()
	want := map[string]map[string]any{}
	for _, o := range fromConfig {
		if o.GetKind() == "Namespace" {
			continue
		}
		want[key(o)] = plain(t, o, false)
	}
	got := map[string]map[string]any{}
	for _, o := range fromCharts {
		if _, dup := got[key(o)]; dup {
			t.Errorf("the charts render %s twice", key(o))
		}
		got[key(o)] = plain(t, o, true)
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, inConfig := want[k]
		g, inChart := got[k]
		switch {
		case !inChart:
			t.Errorf("%s: in config/, not in the charts", k)
		case !inConfig:
			t.Errorf("%s: in the charts, not in config/", k)
		default:
			if d := cmp.Diff(w, g); d != "" {
				t.Errorf("%s differs from config/ (-config +charts):\n%s", k, d)
			}
		}
	}
}

// One source of truth: the charts' default renders install config/'s
// objects, with the same specs, for each install config/ has.
func TestChartsInstallWhatConfigInstalls(t *testing.T) {
	crds := render(t, "tandem-crds", "tandem-system", nil)
	for _, c := range []struct {
		Name   string
		values string
		config string
	}{
		{Name: "default", config: "resources:\n- %s\n", values: ""},
		{Name: "default-certmanager", values: "certManager: {enabled: true}", config: "resources:\n- %[1]s\ncomponents:\n- %[1]s/../certmanager\n"},
		{Name: "policy", values: "injection: {mode: policy}", config: "resources:\n- %s\n"},
		{Name: "policy-certmanager", values: "injection: {mode: policy}\ncertManager: {enabled: true}", config: "resources:\n- %[1]s\ncomponents:\n- %[1]s/certmanager\n"},
	} {
		t.Run(c.Name, func(t *testing.T) {
			dir := "config/default"
			if strings.HasPrefix(c.Name, "policy") {
				dir = "config/policy"
			}
			objs := append(render(t, "tandem", "tandem-system", values(t, c.values)), crds...)
			sameObjects(t, objs, build(t, fmt.Sprintf(c.config, rel(t, dir))))
		})
	}
	t.Run("cni", func(t *testing.T) {
		sameObjects(t, render(t, "tandem-cni", "kube-system", nil), build(t, fmt.Sprintf("resources:\n- %s\n", rel(t, "config/cni"))))
	})
	// make deploy's overlay: its images, CNI mode.
	t.Run("deploy-overlay-cni", func(t *testing.T) {
		img := func(ref string) string {
			i := strings.LastIndex(ref, ":")
			return fmt.Sprintf("{repository: %q, tag: %q}", ref[:i], ref[i+1:])
		}
		objs := append(render(t, "tandem", "tandem-system", values(t, fmt.Sprintf(
			"capture: {mode: cni}\ninjector: {image: %s}\nsidecar: {agent: {image: %s}, proxy: {image: %s}}",
			img(testenv.OverlayInjectorImage), img(testenv.OverlayAgentImage), img(testenv.OverlayProxyImage)))), crds...)
		objs = append(objs, render(t, "tandem-cni", "kube-system", values(t, "image: "+img(testenv.OverlayAgentImage)))...)
		sameObjects(t, objs, testenv.DeployOverlay(t, "default", "cni"))
	})
}
