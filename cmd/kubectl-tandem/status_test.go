package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/meshstatus"
	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/logbuf"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/testutil/xdstest"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
)

// TestStatusWithRealAgents runs the injector and one real agent process per
// injected pod on a local control plane, the agents started with the
// injected container's command line, and reads everything through
// `kubectl tandem status` and `config`, port-forward and all: every agent
// on discovery; a configuration a proxy refuses, with its error; discovery
// stopped, the agents on the API server, asked themselves; the injector
// back with changed templates, the earlier Envoy pods stale and the
// proxyless one current; a user RBAC does not allow refused.
func TestStatusWithRealAgents(t *testing.T) {
	bin := binaries(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, testenv.Options{
		WebhookInstall: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}},
		APIServerFlags: map[string]string{"disable-admission-plugins": "", "enable-admission-plugins": "ServiceAccount"},
	})
	ctx := context.Background()
	// The install status reads: the Deployment (its pods are the test's),
	// and the agents' ClusterRole.
	install := testenv.DeployOverlay(t, "default", "init")
	c.apply(t, install, "Namespace", "ServiceAccount", "ClusterRole", "Role", "Deployment")
	wh := c.env.WebhookInstallOptions
	if err := os.WriteFile(filepath.Join(wh.LocalServingCertDir, "ca.crt"), wh.LocalServingCAData, 0o600); err != nil {
		t.Fatal(err)
	}
	inj := &injectorProc{t: t, bin: filepath.Join(bin, "injector"), discovery: testenv.FreeAddr(t), status: testenv.FreeAddr(t),
		health: testenv.FreeAddr(t), metrics: testenv.FreeAddr(t),
		args: []string{"--kubeconfig=" + c.kubeconfig, "--cert-dir=" + wh.LocalServingCertDir,
			"--webhook-host=" + wh.LocalServingHost, "--webhook-port=" + strconv.Itoa(wh.LocalServingPort),
			"--injector-namespace=tandem-system", "--native-sidecar=true"}}
	inj.start()
	// The injector's pod, as its Deployment would create it.
	var dep appsv1.Deployment
	for _, o := range install {
		if o.GetKind() == "Deployment" && o.GetName() == wellknown.InjectorDeployment {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	injPod := createPod(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tandem-injector-0", Namespace: "tandem-system", Labels: dep.Spec.Template.Labels},
		Spec: dep.Spec.Template.Spec})
	c.kubelet.Forward("tandem-system", injPod.Name, wellknown.InjectorStatusPort, inj.status)

	// Three injected pods: two with Envoy, one proxyless.
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	discoverytest.ServiceAccount(t, c.kube, "shop", "default")
	if _, err := c.kube.CoreV1().Services("shop").Create(ctx, kubeobj.Service("shop", "cart", "grpc", 50051, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	agentKubeconfig := serviceAccountKubeconfig(t, c, "shop", "default")
	agents := map[string]*agentProc{}
	for _, p := range []struct{ name, template string }{{"envoy-a", "envoy"}, {"envoy-b", "envoy"}, {"grpc-c", "proxyless"}} {
		pod := createPod(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: "shop", Annotations: map[string]string{wellknown.AnnotationTemplate: p.template}},
			Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}})
		if pod.Annotations[wellknown.StatusAnnotation] == "" {
			t.Fatalf("pod %s was not injected", p.name)
		}
		a := startAgent(t, c, filepath.Join(bin, "agent"), pod, agentKubeconfig)
		c.kubelet.Forward("shop", p.name, wellknown.AgentDebugPort, a.debug)
		agents[p.name] = a
	}
	// Envoy stands for itself: a client that accepts clusters and listeners.
	envoys := map[string]*xdstest.SotW{}
	for _, name := range []string{"envoy-a", "envoy-b"} {
		conn, err := grpc.NewClient("unix://"+agents[name].socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		e := xdstest.NewSotW(t, conn)
		e.Subscribe(resource.ClusterType)
		e.ACK(e.Recv(resource.ClusterType))
		e.Subscribe(resource.ListenerType)
		e.ACK(e.Recv(resource.ListenerType))
		envoys[name] = e
	}

	statusAs := func(kubeconfig string) *meshstatus.Report {
		t.Helper()
		code, out, errOut := cli(kubeconfig, "status", "-n", "shop", "-o", "json")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		var rep meshstatus.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		return &rep
	}
	status := func() *meshstatus.Report { t.Helper(); return statusAs(c.kubeconfig) }
	pod := func(rep *meshstatus.Report, name string) meshstatus.Pod {
		for _, p := range rep.Pods {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("status lists no pod %s: %+v", name, rep.Pods)
		return meshstatus.Pod{}
	}
	synced := func(p meshstatus.Pod) bool {
		return discoveryState(p) == agentstatus.StateSynced && (p.Template == "proxyless" || proxyState(p) == agentstatus.StateSynced)
	}

	// Every agent on discovery, in step, its sidecars current.
	var rep *meshstatus.Report
	poll.Until(t, 30*time.Second, "every agent on discovery and in step", func() bool {
		rep = status()
		return len(rep.Pods) == 3 && !slices.ContainsFunc(rep.Pods, func(p meshstatus.Pod) bool {
			return p.Source != agentstatus.SourceDiscovery || p.Agent == nil || !synced(p)
		})
	})
	if len(rep.Replicas) != 1 || rep.Replicas[0].Pod != injPod.Name || rep.Replicas[0].Agents != 3 || !rep.Replicas[0].Ready || rep.Replicas[0].Injection != "webhook" {
		t.Errorf("replicas %+v; want %s, ready, injecting by webhook, 3 agents", rep.Replicas, injPod.Name)
	}
	for _, p := range rep.Pods {
		if p.Sidecars != staleness.Current || p.InjectedBy != staleness.ByWebhook || p.Replica != injPod.Name || p.Agent.Version == "" || p.Layout != "native" {
			t.Errorf("%s: %+v; want current sidecars of the webhook, native, agent version known, on replica %s", p.Name, p, injPod.Name)
		}
	}
	if p := pod(rep, "envoy-a"); p.Capture != wellknown.CaptureInit || p.Template != "envoy" || !slices.Equal(p.Discovery.Subscriptions, []string{"*"}) {
		t.Errorf("envoy-a: template %s, capture %s, subscriptions %v; want envoy, init, everything", p.Template, p.Capture, p.Discovery.Subscriptions)
	}
	if p := pod(rep, "grpc-c"); p.Capture != "" || p.Agent.Mode != "proxyless" || proxyState(p) != "no client" {
		t.Errorf("grpc-c: capture %q, mode %s, proxy %s; want none, proxyless, no client", p.Capture, p.Agent.Mode, proxyState(p))
	}
	// The operator roles the install ships see the same.
	if op := statusAs(c.operator(t)); len(op.Pods) != 3 || slices.ContainsFunc(op.Pods, func(p meshstatus.Pod) bool { return p.Discovery == nil || p.Sidecars != staleness.Current }) {
		t.Errorf("status as the install's operator role: %+v", op.Pods)
	}
	code, table, _ := cli(c.kubeconfig, "status", "-n", "shop")
	t.Logf("status:\n%s", table)
	if code != 0 || !regexp.MustCompile(`(?m)^shop\s+envoy-a\s+envoy\s+native/init\s+current\s+\S+\s+discovery\s+synced\s+synced$`).MatchString(table) {
		t.Errorf("status table (exit %d):\n%s", code, table)
	}

	// A configuration the proxy refuses: a new Service changes clusters and
	// listeners; envoy-a refuses the clusters.
	if _, err := c.kube.CoreV1().Services("shop").Create(ctx, kubeobj.Service("shop", "pay", "grpc", 8080, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const refusal = "cluster outbound|8080||pay.shop.svc.cluster.local: refused by the test"
	for name, e := range envoys {
		for range 2 {
			r := e.RecvAny()
			if name == "envoy-a" && r.TypeUrl == resource.ClusterType {
				e.NACK(r, refusal)
			} else {
				e.ACK(r)
			}
		}
	}
	poll.Until(t, 30*time.Second, "envoy-a's refusal in status", func() bool {
		rep = status()
		return len(pod(rep, "envoy-a").Refused) == 1 && synced(pod(rep, "envoy-b"))
	})
	if r := pod(rep, "envoy-a").Refused[0]; !strings.Contains(r, "proxy refused cluster") || !strings.HasSuffix(r, refusal) {
		t.Errorf("envoy-a's refusal: %q; want the proxy's own error", r)
	}
	if s := proxyState(pod(rep, "envoy-a")); s != "rejected:cluster" {
		t.Errorf("envoy-a's proxy: %s, want rejected:cluster", s)
	}
	code, table, _ = cli(c.kubeconfig, "status", "-n", "shop", "-o", "wide")
	t.Logf("status -o wide, envoy-a refusing clusters:\n%s", table)
	if code != 0 || !strings.Contains(table, "shop/envoy-a: proxy refused cluster version") || !strings.Contains(table, refusal) {
		t.Errorf("status -o wide (exit %d) does not show envoy-a's refusal:\n%s", code, table)
	}
	inj.expectMetrics(`tandem_discovery_agents{mode="sidecar",source="discovery"} 2`, `tandem_discovery_agents{mode="proxyless",source="discovery"} 1`,
		`tandem_discovery_proxies_rejecting{type="cluster"} 1`, `tandem_injector_pods{injected_by="webhook",state="current"} 3`)

	// What an agent serves, through port-forward.
	code, out, errOut := cli(c.kubeconfig, "config", "envoy-b", "-n", "shop", "--kind", "clusters")
	var doc map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || len(doc) != 1 || !slices.ContainsFunc(doc["clusters"], func(r map[string]any) bool {
		return r["name"] == "outbound|8080||pay.shop.svc.cluster.local"
	}) {
		t.Errorf("config envoy-b --kind clusters: exit %d (%v) %s\n%s", code, err, errOut, out)
	}
	if code, out, _ := cli(c.kubeconfig, "config", "grpc-c", "-n", "shop", "-o", "yaml"); code != 0 || !strings.Contains(out, "listeners: []") {
		t.Errorf("config grpc-c -o yaml: exit %d\n%s", code, out)
	}

	// Discovery stopped: every agent watches the API server, and says so itself.
	inj.stop()
	poll.Until(t, 30*time.Second, "every agent on the API server", func() bool {
		rep = status()
		return !slices.ContainsFunc(rep.Pods, func(p meshstatus.Pod) bool { return p.Source != agentstatus.SourceAPIServer })
	})
	_, table, warnings := cli(c.kubeconfig, "status", "-n", "shop")
	t.Logf("status, discovery stopped:\n%s%s", warnings, table)
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], injPod.Name) {
		t.Errorf("warnings %q: want the unreachable injector pod named", rep.Warnings)
	}
	for _, p := range rep.Pods {
		if p.Discovery != nil || p.Agent.Discovery == nil || p.Agent.Discovery.Connected || p.Agent.Discovery.Fallbacks < 1 {
			t.Errorf("%s with discovery down: record %v, link %+v; want no record, not connected, fallen back", p.Name, p.Discovery, p.Agent.Discovery)
		}
	}
	if r := pod(rep, "envoy-a").Refused; len(r) != 1 || !strings.HasSuffix(r[0], refusal) {
		t.Errorf("envoy-a's refusal from the agent itself: %q", r)
	}

	// The injector back with changed templates: the Envoy pods injected
	// before are stale, the proxyless one is current; agents are back.
	dir := t.TempDir()
	entries, err := fs.ReadDir(templates.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(templates.Builtin, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "_helpers.tpl" {
			changed := bytes.Replace(b, []byte("- --drain-time-s\n  - \"5\""), []byte("- --drain-time-s\n  - \"10\""), 1)
			if bytes.Equal(changed, b) {
				t.Fatal("the proxy's drain time is not where the test changes it")
			}
			b = changed
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inj.args = append(inj.args, "--templates="+dir)
	inj.start()
	poll.Until(t, 30*time.Second, "agents back on discovery, sidecars compared", func() bool {
		rep = status()
		return !slices.ContainsFunc(rep.Pods, func(p meshstatus.Pod) bool {
			return p.Source != agentstatus.SourceDiscovery || p.Sidecars == staleness.Unknown
		})
	})
	for _, p := range rep.Pods {
		want := staleness.Stale
		if p.Template == "proxyless" {
			want = staleness.Current
		}
		if p.Sidecars != want {
			t.Errorf("%s after the template change: %s (%s), want %s", p.Name, p.Sidecars, p.SidecarsReason, want)
		}
		if want == staleness.Stale && !regexp.MustCompile(`tandem-proxy\.args\[\d+\]: the pod has 5, rendered now 10`).MatchString(p.SidecarsReason) {
			t.Errorf("%s: reason %q; want the changed drain time named", p.Name, p.SidecarsReason)
		}
	}
	_, table, _ = cli(c.kubeconfig, "status", "-n", "shop")
	t.Logf("status, the templates changed:\n%s", table)
	inj.expectMetrics(`tandem_injector_pods{injected_by="webhook",state="stale"} 2`, `tandem_injector_pods{injected_by="webhook",state="current"} 1`)

	// A user who may list pods, but not port-forward to the injector: refused, and told why.
	viewer := c.user(t, "viewer")
	c.allow(t, "viewer", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}})
	code, out, errOut = cli(viewer, "status", "-n", "shop")
	t.Logf("status as a user without port-forward: exit %d\n%s", code, errOut)
	if code != 1 || out != "" || !strings.Contains(errOut, "may not (RBAC: create pods/portforward in namespace tandem-system)") || !strings.Contains(errOut, "forbidden") {
		t.Errorf("status as a user without port-forward: exit %d, stdout %q, stderr %q; want 1 and the permission named", code, out, errOut)
	}
	code, _, errOut = cli(viewer, "config", "envoy-a", "-n", "shop")
	if code != 1 || !strings.Contains(errOut, "RBAC: create pods/portforward in namespace shop") {
		t.Errorf("config as a user without port-forward: exit %d, stderr %q", code, errOut)
	}
	nobody := c.user(t, "nobody")
	if code, _, errOut := cli(nobody, "status", "-A"); code != 1 || !strings.Contains(errOut, "list pods") {
		t.Errorf("status -A as a user who may not list pods: exit %d, stderr %q", code, errOut)
	}
}

// createPod creates a pod and plays scheduler and kubelet for it.
func createPod(t *testing.T, c *cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var created *corev1.Pod
	poll.Eventually(t, 30*time.Second, func() error {
		var err error
		created, err = c.kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{})
		return err
	})
	if _, err := c.kubelet.Admit(ctx, created); err != nil {
		t.Fatal(err)
	}
	got, err := c.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// serviceAccountKubeconfig holds a token of ns/sa, as a pod of it has.
func serviceAccountKubeconfig(t *testing.T, c *cluster, ns, sa string) string {
	t.Helper()
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: c.cfg.Host, CertificateAuthorityData: c.cfg.CAData}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// injectorProc is `injector serve` as a process.
type injectorProc struct {
	t                                  *testing.T
	bin                                string
	args                               []string
	discovery, status, health, metrics string
	cmd                                *exec.Cmd
	out                                logbuf.Buffer
	done                               chan struct{}
}

func (p *injectorProc) start() {
	t := p.t
	t.Helper()
	args := append([]string{"serve", "--discovery-addr=" + p.discovery, "--agent-discovery-address=" + p.discovery,
		"--status-addr=" + p.status, "--health-probe-bind-address=" + p.health, "--metrics-bind-address=" + p.metrics}, p.args...)
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	poll.Until(t, 60*time.Second, "the injector to be ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the injector exited:\n%s", p.out.String())
		default:
		}
		resp, err := http.Get("http://" + p.health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (p *injectorProc) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// expectMetrics waits for every line in the injector's /metrics.
func (p *injectorProc) expectMetrics(lines ...string) {
	t := p.t
	t.Helper()
	var body string
	ok := func() bool {
		resp, err := http.Get("http://" + p.metrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		for _, l := range lines {
			if !strings.Contains(body, l+"\n") {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			var have []string
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "tandem_discovery") || strings.HasPrefix(l, "tandem_injector_pods") {
					have = append(have, l)
				}
			}
			t.Fatalf("the injector's metrics lack some of %q; they have:\n%s", lines, strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agentProc is an agent process.
type agentProc struct {
	socket, debug string
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// startAgent runs the agent of pod with its container's command line and
// environment, as the kubelet would, but for what a pod's own network
// namespace and volumes give it: its ports (free loopback ports), its
// socket (a temporary directory), its token files. The fallback to the API
// server is quicker than the default, for the test's sake.
func startAgent(t *testing.T, c *cluster, bin string, pod *corev1.Pod, kubeconfig string) *agentProc {
	t.Helper()
	var ctr *corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == wellknown.AgentContainerName {
				ctr = &list[i]
			}
		}
	}
	if ctr == nil {
		t.Fatalf("pod %s has no %s", pod.Name, wellknown.AgentContainerName)
	}
	env := map[string]string{}
	var environ []string
	for _, e := range ctr.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil && f.FieldRef != nil {
			switch path := f.FieldRef.FieldPath; {
			case path == "metadata.name":
				v = pod.Name
			case path == "metadata.namespace":
				v = pod.Namespace
			case path == "spec.nodeName":
				v = pod.Spec.NodeName
			case strings.HasPrefix(path, "metadata.labels['"):
				v = pod.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")]
			default:
				t.Fatalf("env %s: field %s is not resolved by the test", e.Name, path)
			}
		} else if e.ValueFrom != nil {
			t.Fatalf("env %s: a source the test does not resolve", e.Name)
		}
		env[e.Name] = v
		environ = append(environ, e.Name+"="+v)
	}
	var args []string
	for _, a := range append(slices.Clone(ctr.Command[1:]), ctr.Args...) {
		args = append(args, envRef.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := env[envRef.FindStringSubmatch(ref)[1]]; ok {
				return v
			}
			return ref
		}))
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--discovery-address=") }) {
		t.Fatalf("pod %s's agent does not follow discovery: %v", pod.Name, args)
	}
	a := &agentProc{socket: filepath.Join(t.TempDir(), "xds.sock"), debug: testenv.FreeAddr(t)}
	args = append(args, "--kubeconfig="+kubeconfig, "--xds-socket="+a.socket, "--health-addr="+testenv.FreeAddr(t),
		"--metrics-addr="+testenv.FreeAddr(t), "--debug-addr="+a.debug, "--envoy-admin=http://"+testenv.FreeAddr(t),
		"--discovery-token="+discoverytest.PodToken(t, c.kube, pod, discovery.Audience), "--discovery-fallback-after=1s")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), environ...)
	var out logbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent of %s:\n%s", pod.Name, tail(out.String(), 30))
		}
	})
	poll.Until(t, 30*time.Second, fmt.Sprintf("the agent of %s to serve its debug endpoint", pod.Name), func() bool {
		select {
		case <-exited:
			t.Fatalf("the agent of %s exited:\n%s", pod.Name, out.String())
		default:
		}
		resp, err := http.Get("http://" + a.debug + agentstatus.StatusPath)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return a
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
