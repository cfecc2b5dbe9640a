package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/templates"
)

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func find(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q in %v", name, containerNames(cs))
	return nil
}

func inject(t *testing.T, pod *corev1.Pod, annotations map[string]string) Result {
	t.Helper()
	for k, v := range annotations {
		setAnnotation(pod, k, v)
	}
	res, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Injected {
		t.Fatalf("not injected: %s", res.Skipped)
	}
	return res
}

func TestNativeLayout(t *testing.T) {
	pod := pc0()
	res := inject(t, pod, nil)

	if got, want := containerNames(pod.Spec.InitContainers), []string{"tandem-init", "tandem-agent", "tandem-proxy", "c0"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v", got, want)
	}
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("containers %v, want the pod's own [c1] only", got)
	}
	always := corev1.ContainerRestartPolicyAlways
	agent := find(t, pod.Spec.InitContainers, "tandem-agent")
	proxy := find(t, pod.Spec.InitContainers, "tandem-proxy")
	for _, c := range []*corev1.Container{agent, proxy} {
		if c.RestartPolicy == nil || *c.RestartPolicy != always {
			t.Errorf("%s: restartPolicy %v, want Always", c.Name, c.RestartPolicy)
		}
	}
	if init := find(t, pod.Spec.InitContainers, "tandem-init"); init.RestartPolicy != nil {
		t.Errorf("tandem-init must run to completion, has restartPolicy %v", *init.RestartPolicy)
	}
	checkProbe(t, "agent startup", agent.StartupProbe, "/healthz")
	checkProbe(t, "proxy startup", proxy.StartupProbe, "/ready")
	checkProbe(t, "proxy readiness", proxy.ReadinessProbe, "/ready")
	checkProbe(t, "agent readiness", agent.ReadinessProbe, "/ready")
	if agent.Lifecycle != nil {
		t.Errorf("native agent has a lifecycle hook: %+v", agent.Lifecycle)
	}
	want := Status{Template: "envoy", NativeSidecar: true, ConfigHash: res.Status.ConfigHash,
		InitContainers: []string{"tandem-init", "tandem-agent", "tandem-proxy"}, Volumes: []string{"tandem-run", "tandem-token"}}
	var st Status
	if err := json.Unmarshal([]byte(pod.Annotations["tandem.dev/status"]), &st); err != nil {
		t.Fatal(err)
	}
	if st.ConfigHash == "" || len(st.ConfigHash) != 16 {
		t.Errorf("config hash %q, want 16 hex digits", st.ConfigHash)
	}
	if !equalJSON(st, want) {
		t.Errorf("status %+v, want %+v", st, want)
	}
	if _, ok := pod.Annotations[DefaultContainerAnnotation]; ok {
		t.Errorf("native layout keeps the app first; the default-container annotation is not needed")
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: %+v, want httpGet %s on 15021", what, p, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("%s probe: httpGet %s on %s, want %s on 15021", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func TestClassicLayout(t *testing.T) {
	pod := pc0()
	inject(t, pod, map[string]string{"tandem.dev/native-sidecar": "false"})

	if got, want := containerNames(pod.Spec.InitContainers), []string{"c0", "tandem-init"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v (capture after the pod's own)", got, want)
	}
	if got, want := containerNames(pod.Spec.Containers), []string{"tandem-proxy", "tandem-agent", "c1"}; !slices.Equal(got, want) {
		t.Errorf("containers %v, want %v", got, want)
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.RestartPolicy != nil || c.StartupProbe != nil && strings.HasPrefix(c.Name, "tandem-") {
			t.Errorf("%s: classic containers have no restartPolicy or startup probe", c.Name)
		}
	}
	agent := find(t, pod.Spec.Containers, "tandem-agent")
	if agent.Lifecycle == nil || agent.Lifecycle.PostStart == nil || agent.Lifecycle.PostStart.Exec == nil ||
		!slices.Equal(agent.Lifecycle.PostStart.Exec.Command, []string{"/usr/local/bin/agent", "wait"}) {
		t.Errorf("agent postStart %+v, want exec /usr/local/bin/agent wait", agent.Lifecycle)
	}
	if got := pod.Annotations[DefaultContainerAnnotation]; got != "c1" {
		t.Errorf("default container %q, want the app's c1", got)
	}
}

func TestSidecarSpecs(t *testing.T) {
	pod := pc0()
	inject(t, pod, map[string]string{"traffic.tandem.dev/exclude-outbound-ports": "8080,9090"})
	proxy := find(t, pod.Spec.InitContainers, "tandem-proxy")
	agent := find(t, pod.Spec.InitContainers, "tandem-agent")
	initC := find(t, pod.Spec.InitContainers, "tandem-init")

	if !slices.Equal(proxy.Command, []string{"envoy"}) {
		t.Errorf("proxy command %v", proxy.Command)
	}
	args := proxy.Args
	if len(args) != 11 || args[0] != "--config-yaml" || args[2] != "--service-node" || args[3] != "$(POD_NAME).$(POD_NAMESPACE)" ||
		args[4] != "--service-cluster" || args[5] != "$(POD_NAMESPACE)" || args[6] != "--log-level" || args[7] != "info" ||
		args[8] != "--disable-hot-restart" || args[9] != "--drain-time-s" || args[10] != "5" {
		t.Errorf("proxy args %q", args)
	}
	var boot struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
		StaticResources struct {
			Clusters []struct {
				Name           string `json:"name"`
				LoadAssignment struct {
					Endpoints []struct {
						LbEndpoints []struct {
							Endpoint struct {
								Address struct {
									Pipe struct{ Path string } `json:"pipe"`
								} `json:"address"`
							} `json:"endpoint"`
						} `json:"lbEndpoints"`
					} `json:"endpoints"`
				} `json:"loadAssignment"`
			} `json:"clusters"`
		} `json:"staticResources"`
	}
	if err := json.Unmarshal([]byte(args[1]), &boot); err != nil {
		t.Fatalf("--config-yaml is not the bootstrap JSON: %v", err)
	}
	if boot.Node.ID != "$(POD_NAME).$(POD_NAMESPACE)" || len(boot.StaticResources.Clusters) != 1 ||
		boot.StaticResources.Clusters[0].Name != "tandem-xds" ||
		boot.StaticResources.Clusters[0].LoadAssignment.Endpoints[0].LbEndpoints[0].Endpoint.Address.Pipe.Path != "/var/run/tandem/xds.sock" {
		t.Errorf("bootstrap %+v", boot)
	}
	for _, c := range []*corev1.Container{proxy, agent} {
		if !hasFieldRefEnv(c.Env, "POD_NAME", "metadata.name") || !hasFieldRefEnv(c.Env, "POD_NAMESPACE", "metadata.namespace") {
			t.Errorf("%s env %+v lacks POD_NAME/POD_NAMESPACE from the downward API", c.Name, c.Env)
		}
		sc := c.SecurityContext
		if sc == nil || *sc.RunAsUser != 1337 || *sc.RunAsGroup != 1337 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem ||
			*sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s security context %+v", c.Name, sc)
		}
	}
	sc := initC.SecurityContext
	if sc == nil || *sc.RunAsUser != 0 || *sc.RunAsNonRoot || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("tandem-init security context %+v", sc)
	}
	if !slices.Equal(initC.Command, []string{"/usr/local/bin/agent", "init"}) ||
		!slices.Equal(initC.Args, []string{"--proxy-port=15001", "--proxy-uid=1337", "--proxy-gid=1337", "--exclude-outbound-ports=8080,9090"}) {
		t.Errorf("tandem-init command %q args %q", initC.Command, initC.Args)
	}
	if !slices.Equal(agent.Command, []string{"/usr/local/bin/agent", "run"}) || !slices.Equal(agent.Args, []string{"--log-level=info"}) {
		t.Errorf("agent command %q args %q", agent.Command, agent.Args)
	}
	ports := map[string]int32{}
	for _, p := range agent.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["tandem-health"] != 15021 || ports["tandem-metrics"] != 15020 {
		t.Errorf("agent ports %+v", agent.Ports)
	}
	// The agent gets its own token; proxy and init get an empty directory
	// where the API server would otherwise mount the pod's token.
	const tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	mounts := func(c *corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.MountPath] = vm.Name + "/" + vm.SubPath
		}
		return m
	}
	if m := mounts(agent); len(m) != 2 || m["/var/run/tandem"] != "tandem-run/" || m[tokenDir] != "tandem-token/" {
		t.Errorf("agent mounts %v", m)
	}
	if m := mounts(proxy); len(m) != 2 || m["/var/run/tandem"] != "tandem-run/" || m[tokenDir] != "tandem-run/no-token" {
		t.Errorf("proxy mounts %v", m)
	}
	if m := mounts(initC); len(m) != 1 || m[tokenDir] != "tandem-run/no-token" {
		t.Errorf("tandem-init mounts %v", m)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	if run := vols["tandem-run"]; run.EmptyDir == nil || run.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("tandem-run %+v, want an in-memory emptyDir", run)
	}
	tok := vols["tandem-token"]
	if tok.Projected == nil || len(tok.Projected.Sources) != 3 || tok.Projected.Sources[0].ServiceAccountToken == nil ||
		tok.Projected.Sources[1].ConfigMap == nil || tok.Projected.Sources[1].ConfigMap.Name != "kube-root-ca.crt" ||
		tok.Projected.Sources[2].DownwardAPI == nil {
		t.Errorf("tandem-token %+v", tok)
	}
	if _, ok := vols["v0"]; !ok {
		t.Errorf("the pod's own volume v0 is gone")
	}
}

func hasFieldRefEnv(env []corev1.EnvVar, name, path string) bool {
	return slices.ContainsFunc(env, func(e corev1.EnvVar) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path
	})
}

func TestProxyless(t *testing.T) {
	pod := pc0()
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "TARGET", Value: "xds:///greeter.shop.svc.cluster.local:50051"}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "c2"})
	inject(t, pod, map[string]string{"tandem.dev/template": "proxyless"})

	if got, want := containerNames(pod.Spec.InitContainers), []string{"tandem-agent", "c0"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v (no capture, no proxy)", got, want)
	}
	agent := find(t, pod.Spec.InitContainers, "tandem-agent")
	if !slices.Contains(agent.Args, "--proxyless") {
		t.Errorf("agent args %q lack --proxyless", agent.Args)
	}
	checkProbe(t, "proxyless agent startup", agent.StartupProbe, "/ready")
	for _, c := range pod.Spec.Containers {
		n := len(c.Env)
		if n < 3 || c.Env[n-3].Name != "TANDEM_POD_NAME" || c.Env[n-2].Name != "TANDEM_POD_NAMESPACE" || c.Env[n-1].Name != "GRPC_XDS_BOOTSTRAP_CONFIG" {
			t.Fatalf("%s env %+v: want TANDEM_POD_NAME, TANDEM_POD_NAMESPACE then GRPC_XDS_BOOTSTRAP_CONFIG last", c.Name, c.Env)
		}
		var boot struct {
			XDSServers []struct {
				ServerURI string `json:"server_uri"`
			} `json:"xds_servers"`
			Node struct{ ID string } `json:"node"`
		}
		if err := json.Unmarshal([]byte(c.Env[n-1].Value), &boot); err != nil {
			t.Fatal(err)
		}
		if len(boot.XDSServers) != 1 || boot.XDSServers[0].ServerURI != "unix:///var/run/tandem/xds.sock" || boot.Node.ID != "$(TANDEM_POD_NAME).$(TANDEM_POD_NAMESPACE)" {
			t.Errorf("%s gRPC bootstrap %+v", c.Name, boot)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != "tandem-run" || c.VolumeMounts[0].MountPath != "/var/run/tandem" || !c.VolumeMounts[0].ReadOnly {
			t.Errorf("%s mounts %+v, want tandem-run read-only at /var/run/tandem", c.Name, c.VolumeMounts)
		}
	}
	if pod.Spec.Containers[0].Env[0].Name != "TARGET" {
		t.Errorf("the container's own env must come first: %+v", pod.Spec.Containers[0].Env)
	}
}

func TestDenials(t *testing.T) {
	for _, tc := range []struct {
		annotations map[string]string
		labels      map[string]string
		want        []string
	}{
		{map[string]string{"tandem.dev/proxy-cpu": "lots"}, nil, []string{"tandem.dev/proxy-cpu", `"lots"`, "100m"}},
		{map[string]string{"tandem.dev/proxy-memory": "12 Mi"}, nil, []string{"tandem.dev/proxy-memory", `"12 Mi"`, "128Mi"}},
		{map[string]string{"tandem.dev/template": "istio"}, nil, []string{"tandem.dev/template", `"istio"`, `"envoy" or "proxyless"`}},
		{map[string]string{"traffic.tandem.dev/exclude-outbound-ports": "80,0"}, nil, []string{"traffic.tandem.dev/exclude-outbound-ports", `"80,0"`, `"0" is not a TCP port`, "1 to 65535"}},
		{map[string]string{"traffic.tandem.dev/exclude-outbound-ports": "http"}, nil, []string{`"http" is not a TCP port`}},
		{map[string]string{"traffic.tandem.dev/exclude-outbound-cidrs": "10.0.0.0/8,300.1.1.1/32"}, nil, []string{"traffic.tandem.dev/exclude-outbound-cidrs", `"300.1.1.1/32" is not an IPv4 or IPv6 CIDR`, "10.0.0.0/8"}},
		{map[string]string{"traffic.tandem.dev/include-outbound-cidrs": "10.96.0.1/12"}, nil, []string{"the range it names is 10.96.0.0/12"}},
		{map[string]string{"traffic.tandem.dev/include-outbound-cidrs": ""}, nil, []string{"traffic.tandem.dev/include-outbound-cidrs", `""`, `"*"`}},
		{map[string]string{"tandem.dev/native-sidecar": "True"}, nil, []string{"tandem.dev/native-sidecar", `"True"`, `"true" or "false"`}},
		{map[string]string{"tandem.dev/log-level": "trace"}, nil, []string{"tandem.dev/log-level", `"trace"`, `"debug" or "info" or "warn" or "error"`}},
		{map[string]string{"tandem.dev/watch-namespaces": "a,,b"}, nil, []string{"tandem.dev/watch-namespaces", `"a,,b"`}},
		{map[string]string{"tandem.dev/agent-image": ""}, nil, []string{"tandem.dev/agent-image", "empty", "image reference"}},
		{map[string]string{"tandem.dev/proxy-cpu": "2", "tandem.dev/proxy-cpu-limit": "1"}, nil, []string{"proxy CPU request 2", "limit 1", "tandem.dev/proxy-cpu-limit"}},
		{nil, map[string]string{"tandem.dev/inject": "yes"}, []string{"label tandem.dev/inject", `"yes"`, `"true"`, `"false"`}},
	} {
		pod := pc0()
		pod.Annotations, pod.Labels = tc.annotations, tc.labels
		_, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission)
		if !IsDenied(err) {
			t.Errorf("%v %v: got %v, want a denial", tc.annotations, tc.labels, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: message %q does not mention %s", tc.annotations, tc.labels, err, w)
			}
		}
	}
}

func TestNamespaceAnnotationDenialNamesNamespace(t *testing.T) {
	ns := labeledNamespace("shop")
	ns.Annotations = map[string]string{"tandem.dev/log-level": "loud"}
	_, err := newTestInjector(t).Inject(pc0(), ns, Admission)
	if !IsDenied(err) || !strings.Contains(err.Error(), `namespace "shop"`) || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("got %v", err)
	}
	// Both layers are checked: a bad namespace default is reported even
	// where a pod overrides it, so it is fixed rather than lurking.
	pod := pc0()
	pod.Annotations = map[string]string{"tandem.dev/log-level": "debug"}
	if _, err := newTestInjector(t).Inject(pod, ns, Admission); !IsDenied(err) {
		t.Errorf("a bad namespace default must be reported even when the pod overrides it, got %v", err)
	}
}

func TestClashes(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*corev1.Pod)
		want   string
	}{
		{func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "tandem-init"})
		}, `init container named "tandem-init"`},
		{func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "tandem-agent"})
		}, `container named "tandem-agent"`},
		{func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "tandem-token"}) }, `volume named "tandem-token"`},
	} {
		pod := pc0()
		tc.mutate(pod)
		_, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission)
		if !IsDenied(err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tandem.dev/status") {
			t.Errorf("got %v, want a denial naming %s", err, tc.want)
		}
	}
	// Proxyless mounts the socket directory into the app: a mount there clashes.
	pod := pc0()
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v0", MountPath: "/var/run/tandem"}}
	pod.Annotations = map[string]string{"tandem.dev/template": "proxyless"}
	if _, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission); !IsDenied(err) || !strings.Contains(err.Error(), "/var/run/tandem") {
		t.Errorf("got %v", err)
	}
}

func TestDecisions(t *testing.T) {
	in := newTestInjector(t)
	plain := Namespace{Name: "plain"}
	for _, tc := range []struct {
		name   string
		ns     Namespace
		label  string
		host   bool
		inject bool
	}{
		{"labeled namespace", labeledNamespace("shop"), "", false, true},
		{"labeled namespace, opt-out", labeledNamespace("shop"), "false", false, false},
		{"labeled namespace, explicit opt-in", labeledNamespace("shop"), "true", false, true},
		{"unlabeled namespace", plain, "", false, false},
		{"unlabeled namespace, opt-in", plain, "true", false, true},
		{"namespace labeled otherwise", Namespace{Name: "x", Labels: map[string]string{"tandem.dev/inject": "disabled"}}, "", false, false},
		{"host network", labeledNamespace("shop"), "true", true, false},
		{"kube-system", labeledNamespace("kube-system"), "true", false, false},
		{"kube-public", labeledNamespace("kube-public"), "true", false, false},
		{"kube-node-lease", labeledNamespace("kube-node-lease"), "true", false, false},
		{"injector namespace", labeledNamespace("tandem-system"), "true", false, false},
	} {
		pod := pc0()
		if tc.label != "" {
			pod.Labels = map[string]string{"tandem.dev/inject": tc.label}
		}
		pod.Spec.HostNetwork = tc.host
		before := canonical(t, mustJSON(t, pod))
		res, err := in.Inject(pod, tc.ns, Admission)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Injected != tc.inject {
			t.Errorf("%s: injected=%v (%s), want %v", tc.name, res.Injected, res.Skipped, tc.inject)
		}
		if !res.Injected && (res.Skipped == "" || canonical(t, mustJSON(t, pod)) != before) {
			t.Errorf("%s: a skipped pod must be unchanged and say why (%q)", tc.name, res.Skipped)
		}
	}
}

// TestStripRestores: removing what the status lists gives back the pod as it was.
func TestStripRestores(t *testing.T) {
	for _, ann := range []map[string]string{nil, {"tandem.dev/native-sidecar": "false"}, {"tandem.dev/template": "proxyless", "tandem.dev/native-sidecar": "false"}} {
		pod := pc0()
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
		for k, v := range ann {
			setAnnotation(pod, k, v)
		}
		before := canonical(t, mustJSON(t, pod))
		inject(t, pod, nil)
		st, ok, err := ParseStatus(pod)
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		strip(pod, st)
		if got := canonical(t, mustJSON(t, pod)); got != before {
			t.Errorf("%v: strip did not restore the pod:\n%s", ann, textdiff.Lines(before, got))
		}
	}
}

// TestReinjectUpdates: an injected manifest re-injected with other settings
// gets the new sidecars once, not a second set.
func TestReinjectUpdates(t *testing.T) {
	pod := pc0()
	first := inject(t, pod, nil)
	setAnnotation(pod, "tandem.dev/log-level", "debug")
	setAnnotation(pod, "tandem.dev/native-sidecar", "false")
	res, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Reinject)
	if err != nil || !res.Injected {
		t.Fatal(err, res)
	}
	if res.Status.ConfigHash == first.Status.ConfigHash {
		t.Errorf("config hash unchanged after new settings")
	}
	if got, want := containerNames(pod.Spec.InitContainers), []string{"c0", "tandem-init"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v", got, want)
	}
	if got, want := containerNames(pod.Spec.Containers), []string{"tandem-proxy", "tandem-agent", "c1"}; !slices.Equal(got, want) {
		t.Errorf("containers %v, want %v", got, want)
	}
	if n := len(pod.Spec.Volumes); n != 3 {
		t.Errorf("%d volumes, want v0 and the two injected", n)
	}
	// A status the injector did not write is refused on re-injection.
	pod.Annotations["tandem.dev/status"] = "{"
	if _, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Reinject); !IsDenied(err) || !strings.Contains(err.Error(), "tandem.dev/status") {
		t.Errorf("got %v", err)
	}
}

func TestBadDefaults(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Defaults)
		want   string
	}{
		{func(d *Defaults) { d.ProxyCPU = "x" }, `--proxy-cpu="x"`},
		{func(d *Defaults) { d.AgentMemoryLimit = "1 Gi" }, `--agent-memory-limit="1 Gi"`},
		{func(d *Defaults) { d.Template = "nope" }, `--template="nope"`},
		{func(d *Defaults) { d.LogLevel = "loud" }, `--sidecar-log-level="loud"`},
		{func(d *Defaults) { d.ProxyImage = "" }, `--proxy-image=""`},
		{func(d *Defaults) { d.AgentMemory = "1Gi" }, "agent memory request 1Gi (--agent-memory) is more than its limit 256Mi (--agent-memory-limit)"},
	} {
		d := RecommendedDefaults()
		tc.mutate(&d)
		_, err := New(Config{Defaults: d})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %s", err, tc.want)
		}
	}
}

// TestCustomTemplates: a template directory replaces the built-in set.
func TestCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	tmpl := `containersFirst:
- name: tandem-proxy
  image: {{ toJSON .ProxyImage }}
  args: [{{ toJSON .LogLevel }}]
volumes:
- name: tandem-run
  emptyDir: {}
`
	if err := os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := templates.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	d := RecommendedDefaults()
	d.Template = "mine"
	in, err := New(Config{Templates: set, Defaults: d})
	if err != nil {
		t.Fatal(err)
	}
	pod := pc0()
	res, err := in.Inject(pod, labeledNamespace("shop"), Admission)
	if err != nil || !res.Injected {
		t.Fatal(err, res)
	}
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"tandem-proxy", "c1"}) {
		t.Errorf("containers %v", got)
	}
	if res.Status.Template != "mine" || pod.Spec.Containers[0].Args[0] != "info" {
		t.Errorf("status %+v args %v", res.Status, pod.Spec.Containers[0].Args)
	}
	// The built-in names are not there any more.
	pod = pc0()
	pod.Annotations = map[string]string{"tandem.dev/template": "envoy"}
	if _, err := in.Inject(pod, labeledNamespace("shop"), Admission); !IsDenied(err) || !strings.Contains(err.Error(), `accepted: "mine"`) {
		t.Errorf("got %v", err)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// AgentDiscovery reads back what the injection gave the agent, in both
// layouts, and nothing for an agent that watches the API server.
func TestAgentDiscovery(t *testing.T) {
	const addr, ca = "tandem-discovery.tandem-system.svc:15012", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	for _, tc := range []struct {
		name           string
		native         bool
		addr, ca       string
		wantAddr, want string
	}{
		{"native", true, addr, ca, addr, ca},
		{"classic", false, addr, ca, addr, ca},
		{"no CA: the API server", true, addr, "", "", ""},
	} {
		d := RecommendedDefaults()
		d.NativeSidecar, d.DiscoveryAddress, d.DiscoveryCA = tc.native, tc.addr, tc.ca
		in, err := New(Config{Defaults: d})
		if err != nil {
			t.Fatal(err)
		}
		pod := pc0()
		if res, err := in.Inject(pod, labeledNamespace("shop"), Admission); err != nil || !res.Injected {
			t.Fatalf("%s: %+v %v", tc.name, res, err)
		}
		if a, c := AgentDiscovery(pod); a != tc.wantAddr || c != tc.want {
			t.Errorf("%s: AgentDiscovery = %q, %q; want %q, %q", tc.name, a, c, tc.wantAddr, tc.want)
		}
	}
	if a, c := AgentDiscovery(pc0()); a != "" || c != "" {
		t.Errorf("a pod without sidecars: %q, %q", a, c)
	}
}
