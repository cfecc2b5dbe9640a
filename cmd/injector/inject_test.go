package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/textdiff"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// docs splits a YAML stream the way the output is written.
func docs(s string) []string {
	return strings.Split(s, "\n---\n")
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

var nativeInit = []string{"tandem-init", "tandem-agent", "tandem-proxy"}

func TestInjectDeploymentServiceCronJob(t *testing.T) {
	code, out, errOut := run(t, "", "inject", "-f", "testdata/greeter.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	d := docs(out)
	if len(d) != 3 {
		t.Fatalf("%d documents, want 3:\n%s", len(d), out)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(d[0]), &dep); err != nil {
		t.Fatal(err)
	}
	spec := dep.Spec.Template.Spec
	if !slices.Equal(names(spec.InitContainers), nativeInit) || !slices.Equal(names(spec.Containers), []string{"greeter"}) {
		t.Errorf("deployment: init %v containers %v", names(spec.InitContainers), names(spec.Containers))
	}
	if dep.Spec.Template.Annotations["tandem.dev/status"] == "" || *dep.Spec.Replicas != 3 || dep.Spec.Selector.MatchLabels["app"] != "greeter" {
		t.Errorf("deployment fields lost or status missing: %+v", dep.Spec)
	}
	if c := spec.Containers[0]; c.Image != "ghcr.io/tandem-mesh/greeter:latest" || c.Ports[0].ContainerPort != 50051 {
		t.Errorf("the app container changed: %+v", c)
	}
	// The Service is not a workload: written exactly as it came, comment included.
	input, _ := os.ReadFile("testdata/greeter.yaml")
	in := docs(string(input))
	if d[1] != strings.TrimSuffix(in[1], "\n") {
		t.Errorf("service changed:\n%s\nwant:\n%s", d[1], in[1])
	}
	var cj batchv1.CronJob
	if err := yaml.UnmarshalStrict([]byte(d[2]), &cj); err != nil {
		t.Fatal(err)
	}
	js := cj.Spec.JobTemplate.Spec.Template.Spec
	if !slices.Equal(names(js.InitContainers), nativeInit) || js.RestartPolicy != corev1.RestartPolicyOnFailure || cj.Spec.Schedule != "0 3 * * *" {
		t.Errorf("cronjob: init %v restartPolicy %s schedule %q", names(js.InitContainers), js.RestartPolicy, cj.Spec.Schedule)
	}

	// Injecting the output again changes nothing.
	code, again, errOut := run(t, out, "inject", "-f", "-")
	if code != 0 || again != out {
		t.Errorf("re-injection (exit %d, %s) changed the output", code, errOut)
	}
}

// TestInjectCaptureCNI: --capture=cni replaces tandem-init with
// tandem-validate in every workload.
func TestInjectCaptureCNI(t *testing.T) {
	code, out, errOut := run(t, "", "inject", "-f", "testdata/greeter.yaml", "--capture=cni")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(docs(out)[0]), &dep); err != nil {
		t.Fatal(err)
	}
	spec := dep.Spec.Template.Spec
	if want := []string{"tandem-validate", "tandem-agent", "tandem-proxy"}; !slices.Equal(names(spec.InitContainers), want) {
		t.Errorf("init containers %v, want %v", names(spec.InitContainers), want)
	}
	if v := spec.InitContainers[0]; v.Command[1] != "validate" || v.SecurityContext.Capabilities.Add != nil || *v.SecurityContext.RunAsUser != 1338 {
		t.Errorf("tandem-validate: command %v, security context %+v", v.Command, v.SecurityContext)
	}
}

func TestInjectEveryWorkloadKind(t *testing.T) {
	tmpl := `{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}`
	for _, m := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"app:1"}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"s"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"ds"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"rs"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"rc"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"template":` + tmpl + `}}`,
		`{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"cj"},"spec":{"schedule":"@daily","jobTemplate":{"spec":{"template":` + tmpl + `}}}}`,
	} {
		code, out, errOut := run(t, m, "inject", "-f", "-")
		if code != 0 {
			t.Errorf("%s: exit %d: %s", m[:60], code, errOut)
			continue
		}
		// JSON in, JSON out.
		if strings.Count(out, `"name":"tandem-proxy"`) != 1 || strings.Count(out, `"tandem.dev/status"`) != 1 {
			t.Errorf("%.60s: not injected once:\n%s", m, out)
		}
	}
}

func TestInjectJSONList(t *testing.T) {
	list := `{"apiVersion":"v1","kind":"List","items":[
	  {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"big":"12345678901234567890"}},
	  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"demo"},"spec":{"containers":[{"name":"app","image":"app:1"}]}},
	  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"out","labels":{"tandem.dev/inject":"false"}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}
	]}`
	code, out, errOut := run(t, list, "inject", "-f", "-", "--native-sidecar=false")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var l corev1.List
	if err := yaml.UnmarshalStrict([]byte(out), &l); err != nil || len(l.Items) != 3 {
		t.Fatalf("output is not a List of 3: %v\n%s", err, out)
	}
	var cm corev1.ConfigMap
	var injected, optedOut corev1.Pod
	for i, into := range []any{&cm, &injected, &optedOut} {
		if err := yaml.Unmarshal(l.Items[i].Raw, into); err != nil {
			t.Fatal(err)
		}
	}
	if cm.Data["big"] != "12345678901234567890" {
		t.Errorf("configmap changed: %+v", cm.Data)
	}
	// Classic layout, from --native-sidecar=false.
	if got := names(injected.Spec.Containers); !slices.Equal(got, []string{"tandem-proxy", "tandem-agent", "app"}) {
		t.Errorf("pod containers %v", got)
	}
	if len(optedOut.Spec.Containers) != 1 || optedOut.Annotations != nil {
		t.Errorf("opted-out pod was changed: %+v", optedOut.Spec)
	}
	if !strings.Contains(errOut, `<stdin>:4: document 1, List item 3, Pod out (v1): not injected: the pod is labeled tandem.dev/inject=false`) {
		t.Errorf("no note about the opted-out pod on stderr: %q", errOut)
	}
}

func TestInjectErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        tandem.dev/proxy-memory: lots
    spec:
      containers:
      - name: web
        image: web:1
`), 0o644)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte(`apiVersion: v1
kind: Pod
metadata:
  name: typo
spec:
  containers:
  - name: web
    image: web:1
    imagePullPolicey: Always
`), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"inject", "-f", bad}, 1, []string{"bad.yaml:6: document 2, Deployment shop/web (apps/v1)", "tandem.dev/proxy-memory", `"lots"`, "128Mi"}},
		{[]string{"inject", "-f", unknown}, 1, []string{"unknown.yaml:1: document 1, Pod typo (v1)", "imagePullPolicey"}},
		{[]string{"inject", "-f", filepath.Join(dir, "missing.yaml")}, 1, []string{"missing.yaml"}},
		{[]string{"inject"}, 2, []string{"-f is required"}},
		{[]string{"inject", "-f", bad, "--proxy-cpu", "x"}, 2, []string{`--proxy-cpu="x"`, "CPU quantity"}},
		{[]string{"inject", "-f", bad, "--templates", t.TempDir()}, 2, []string{"--templates", "no templates"}},
		{[]string{"inject", "-f", bad, "--capture", "ebpf"}, 2, []string{`--capture="ebpf"`, `"init" or "cni"`}},
	} {
		code, out, errOut := run(t, "", tc.args...)
		if code != tc.code || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want exit %d and nothing on stdout", tc.args, code, out, tc.code)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
	}
}

func TestInjectCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte("containersFirst:\n- name: tandem-proxy\n  image: {{ toJSON .ProxyImage }}\n"), 0o644)
	code, out, errOut := run(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app"}]}}`,
		"inject", "-f", "-", "--templates", dir, "--proxy-image", "registry.example/envoy:mine")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(out), &pod); err != nil {
		t.Fatal(err)
	}
	if got := names(pod.Spec.Containers); !slices.Equal(got, []string{"tandem-proxy", "app"}) || pod.Spec.Containers[0].Image != "registry.example/envoy:mine" || len(pod.Spec.InitContainers) != 0 {
		t.Errorf("custom template not used: %+v", pod.Spec)
	}
}

func TestInjectRefusesWhatTheTextCannotTake(t *testing.T) {
	for _, tc := range []struct {
		name, manifest string
		args           []string
		want           []string
	}{
		{"a shared anchor", `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
  spec: &spec
    containers:
    - name: app
      image: app:1
- apiVersion: v1
  kind: Pod
  metadata: {name: b}
  spec: *spec
`, nil, []string{"<stdin>:4: document 1, List item 1, Pod a (v1): line 7: spec carries the anchor &spec, which an alias uses elsewhere", "write the other use out in full"}},
		{"a merge key", `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - <<: {name: app, image: app:1}
`, []string{"--template", "proxyless"}, []string{"<stdin>:1: document 1, Pod p (v1): line 7: spec.containers[0] merges another mapping with <<", "write the keys out in full"}},
		{"a YAML error in the second document", `apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
---
apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: app
    image: [app
`, nil, []string{"<stdin>: yaml: line 12: did not find expected ',' or ']'"}},
		{"a scalar document", "just text\n", nil, []string{"<stdin>:1: document 1 is not a Kubernetes object"}},
	} {
		code, out, errOut := run(t, tc.manifest, append([]string{"inject", "-f", "-"}, tc.args...)...)
		if code != 1 || out != "" {
			t.Errorf("%s: exit %d, stdout %q; want exit 1 and nothing on stdout", tc.name, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errOut, w)
			}
		}
	}
}

func TestUninjectCommand(t *testing.T) {
	injected, err := os.ReadFile("../../internal/injectcmd/testdata/manifests/proxyless.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("../../internal/injectcmd/testdata/manifests/proxyless.yaml")
	code, out, errOut := run(t, string(injected), "uninject", "-f", "-")
	if code != 0 || out != string(want) {
		t.Errorf("exit %d (%s), output:\n%s", code, errOut, textdiff.Lines(string(want), out))
	}
	code, out, errOut = run(t, string(want), "uninject", "-f", "-")
	if code != 0 || out != string(want) || !strings.Contains(errOut, "Deployment quotes (apps/v1): no tandem.dev/status annotation: nothing to remove") {
		t.Errorf("uninject of a manifest without sidecars: exit %d, stderr %q, output changed: %v", code, errOut, out != string(want))
	}
	if code, _, errOut := run(t, "", "uninject"); code != 2 || !strings.Contains(errOut, "-f is required") {
		t.Errorf("uninject without -f: exit %d, %q", code, errOut)
	}
}

// Offline injection points agents at discovery only when given the CA they
// verify it with; a file that holds no certificate is refused by name.
func TestInjectDiscoveryCA(t *testing.T) {
	dir := t.TempDir()
	caPEM := testenv.ServingCerts(t, dir, "tandem-discovery.tandem-system.svc")
	agentOf := func(out string) corev1.Container {
		t.Helper()
		var dep appsv1.Deployment
		if err := yaml.UnmarshalStrict([]byte(docs(out)[0]), &dep); err != nil {
			t.Fatal(err)
		}
		for _, c := range dep.Spec.Template.Spec.InitContainers {
			if c.Name == "tandem-agent" {
				return c
			}
		}
		t.Fatal("no tandem-agent container")
		return corev1.Container{}
	}
	discoveryEnv := func(c corev1.Container) (string, bool) {
		for _, e := range c.Env {
			if e.Name == "TANDEM_DISCOVERY_CA" {
				return e.Value, true
			}
		}
		return "", false
	}

	code, out, errOut := run(t, "", "inject", "-f", "testdata/greeter.yaml", "--discovery-ca", filepath.Join(dir, "ca.crt"),
		"--agent-discovery-address", "tandem-discovery.mesh.svc:15012")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	agent := agentOf(out)
	if !slices.Contains(agent.Args, "--discovery-address=tandem-discovery.mesh.svc:15012") {
		t.Errorf("agent args %v lack the discovery address", agent.Args)
	}
	if ca, ok := discoveryEnv(agent); !ok || ca != string(caPEM) {
		t.Errorf("TANDEM_DISCOVERY_CA = %q (set %v), want the CA file's content", ca, ok)
	}

	code, out, errOut = run(t, "", "inject", "-f", "testdata/greeter.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	agent = agentOf(out)
	if _, ok := discoveryEnv(agent); ok || slices.ContainsFunc(agent.Args, func(a string) bool { return strings.HasPrefix(a, "--discovery-address") }) {
		t.Errorf("without --discovery-ca the agent follows discovery: args %v", agent.Args)
	}

	code, out, errOut = run(t, "", "inject", "-f", "testdata/greeter.yaml", "--discovery-ca", filepath.Join(dir, "tls.key"))
	if code != 2 || out != "" || !strings.Contains(errOut, `flag --discovery-ca=`) || !strings.Contains(errOut, "no PEM certificate") {
		t.Errorf("a key file as CA: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
