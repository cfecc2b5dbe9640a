package charts_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/charts"
	"github.com/tandem-mesh/tandem/internal/testutil/golden"
)

// renderCase is one of charts.Cases.
type renderCase = charts.Case

var renderCases = charts.Cases

func valuesOf(t testing.TB, c renderCase) map[string]any {
	t.Helper()
	v, err := c.ValuesIn(root(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func toYAML(t testing.TB, objs []map[string]any) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

// Golden renders: `go test ./internal/charts -update` rewrites them after
// a deliberate change; review the diff.
func TestGoldenRenders(t *testing.T) {
	d := golden.New(t, filepath.Join("testdata", "golden"))
	for _, c := range renderCases {
		t.Run(c.Name, func(t *testing.T) {
			var objs []map[string]any
			for _, o := range render(t, c.Chart, c.Namespace("tandem-system"), valuesOf(t, c)) {
				objs = append(objs, o.Object)
			}
			d.Check(t, c.Name+".yaml", toYAML(t, objs))
		})
	}
}

// The schema refuses what the chart cannot install, naming the key.
func TestSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ Chart, values, key string }{
		{"tandem", "injection: {mode: sidecar}", "/injection/mode"},
		{"tandem", "capture: {mode: iptables}", "/capture/mode"},
		{"tandem", "injectoin: {mode: policy}", "'injectoin' not allowed"},
		{"tandem", "injector: {replica: 3}", "'replica' not allowed"},
		{"tandem", "injector: {replicas: 0}", "/injector/replicas"},
		{"tandem", "injector: {replicas: two}", "/injector/replicas"},
		{"tandem", "injector: {logLevel: verbose}", "/injector/logLevel"},
		{"tandem", "injector: {image: {tag: 'v1 beta'}}", "/injector/image/tag"},
		{"tandem", "injector: {image: {repository: 'Registry/Tandem'}}", "/injector/image/repository"},
		{"tandem", "injector: {image: {pullPolicy: Sometimes}}", "/injector/image/pullPolicy"},
		{"tandem", "injector: {resources: {requests: {cpus: 1}}}", "'cpus' not allowed"},
		{"tandem", "injector: {podDisruptionBudget: {minAvailable: '50 percent'}}", "/injector/podDisruptionBudget/minAvailable"},
		{"tandem", "injector: {autoscaling: {maxReplicas: 0}}", "/injector/autoscaling/maxReplicas"},
		{"tandem", "injector: {podAnnotations: {a: 1}}", "/injector/podAnnotations/a"},
		{"tandem", "certManager: {enabled: yes please}", "/certManager/enabled"},
		{"tandem", "discovery: {address: tandem-discovery}", "/discovery/address"},
		{"tandem", "sidecar: {template: istio}", "/sidecar/template"},
		{"tandem", "sidecar: {nativeSidecar: sometimes}", "/sidecar/nativeSidecar"},
		{"tandem", "sidecar: {logLevel: trace}", "/sidecar/logLevel"},
		{"tandem", "sidecar: {proxy: {resources: {limits: {memory: 1 gig}}}}", "/sidecar/proxy/resources/limits/memory"},
		{"tandem", "sidecar: {agent: {resources: {requests: {cpu: -}}}}", "/sidecar/agent/resources/requests/cpu"},
		{"tandem", "sidecar: {agent: {image: {pullPolicy: Always}}}", "'pullPolicy' not allowed"},
		{"tandem", "sidecar: {proxy: {image: {tag: ''}, port: 15001}}", "'port' not allowed"},
		{"tandem", "metrics: {enabled: 1}", "/metrics/enabled"},
		{"tandem-crds", "gatewayAPI: {install: maybe}", "/gatewayAPI/install"},
		{"tandem-crds", "keepCRDs: true", "'keepCRDs' not allowed"},
		{"tandem-cni", "cniBinDir: opt/cni/bin", "/cniBinDir"},
		{"tandem-cni", "image: {tag: latest, name: x}", "'name' not allowed"},
		{"tandem-cni", "resources: {limits: {memory: lots}}", "/resources/limits/memory"},
	} {
		_, err := charts.Render(filepath.Join(root(t), "charts", c.Chart), charts.Release{Namespace: "tandem-system", Values: values(t, c.values)})
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), "schema") {
			t.Errorf("%s with %q: %v; want a schema error naming %s", c.Chart, c.values, err, c.key)
		}
	}
	// What the schema cannot say, the templates refuse, naming the keys.
	for _, c := range []struct{ Chart, values, want string }{
		{"tandem", "injector: {autoscaling: {enabled: true, minReplicas: 6, maxReplicas: 3}}", "injector.autoscaling: minReplicas 6 is above maxReplicas 3"},
		{"tandem-crds", "gatewayAPI: {install: true}", "gatewayAPI.install"},
	} {
		if _, err := charts.Render(filepath.Join(root(t), "charts", c.Chart), charts.Release{Namespace: "tandem-system", Values: values(t, c.values)}); err == nil || !strings.Contains(err.Error(), c.want) {
			if c.Chart == "tandem-crds" && gatewayAPIPresent(t) {
				continue
			}
			t.Errorf("%s with %q: %v; want an error saying %q", c.Chart, c.values, err, c.want)
		}
	}
}

func gatewayAPIPresent(t testing.TB) bool {
	_, err := os.Stat(filepath.Join(root(t), charts.GatewayAPIDir, "kustomization.yaml"))
	return err == nil
}

// Values as a user gives them with --set come as strings, numbers and
// booleans of other Go types than a values file's; the chart takes them.
func TestSetValues(t *testing.T) {
	objs := render(t, "tandem", "tandem-system", map[string]any{
		"injector": map[string]any{"replicas": int64(3)},
		"sidecar": map[string]any{"nativeSidecar": false, "proxy": map[string]any{"resources": map[string]any{
			"limits": map[string]any{"cpu": int64(2), "memory": nil}, "requests": map[string]any{"cpu": 0.5}}}},
	})
	var args []string
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			c := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			for _, a := range c["args"].([]any) {
				args = append(args, a.(string))
			}
		}
	}
	// null takes a default out.
	for _, want := range []string{"--native-sidecar=false", "--proxy-cpu-limit=2", "--proxy-cpu=0.5", "--proxy-memory=128Mi", "--proxy-memory-limit="} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
}

// helm lint --strict is clean for every chart, with each values file it ships.
func TestLintStrict(t *testing.T) {
	for _, name := range charts.Names {
		dir := filepath.Join(root(t), "charts", name)
		files, err := charts.ValuesFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if _, err := charts.LintWith(dir, f); err != nil {
				t.Errorf("helm lint --strict %s (values %q):\n%v", name, f, err)
			}
		}
	}
	// The linter does fail on a chart with a problem.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v2\nname: broken\nversion: one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := charts.Lint(dir, "default", nil); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("a chart without a SemVer version: %v", err)
	}
}

// The generated chart files are what `make charts` makes now.
func TestGeneratedFilesAreFresh(t *testing.T) {
	files, err := charts.Generate(root(t))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(root(t), path))
		if err != nil {
			t.Errorf("%s: %v (run make charts)", path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make charts", path)
		}
	}
	err = filepath.WalkDir(filepath.Join(root(t), "charts"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root(t), p)
		if _, ok := files[filepath.ToSlash(rel)]; bytes.HasPrefix(b, []byte(charts.GeneratedHeader)) && !ok {
			t.Errorf("%s is generated but no longer made: run make charts", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
