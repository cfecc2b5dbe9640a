package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

func TestNativeSidecarsFor(t *testing.T) {
	for v, want := range map[string]bool{"v1.28.9": false, "v1.29.0": true, "v1.37.2": true, "v1.30.4-eks-a737599": true, "v1.31.1+k3s1": true, "v2.0.0": true} {
		got, why, err := nativeSidecarsFor(v)
		if err != nil || got != want || !strings.Contains(why, v) {
			t.Errorf("%s: %v %q %v, want %v", v, got, why, err, want)
		}
	}
	if _, _, err := nativeSidecarsFor("unknown"); err == nil || !strings.Contains(err.Error(), "--native-sidecar") {
		t.Errorf("an unparsable version must ask for the flag: %v", err)
	}
	if _, _, err := resolveNativeSidecar("maybe", nil); err == nil || !strings.Contains(err.Error(), `--native-sidecar="maybe"`) {
		t.Errorf("got %v", err)
	}
}

// TestServeAgainstAPIServer registers the webhook of config/webhook with a
// real kube-apiserver, runs `serve` as it runs in a cluster, and creates
// pods through the API.
func TestServeAgainstAPIServer(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env, cfg := testenv.Start(t, testenv.Options{
		WebhookInstall: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}},
		// A cluster's API server runs the ServiceAccount plugin before the
		// webhooks: it names the pod's service account and mounts its token.
		APIServerFlags: map[string]string{"disable-admission-plugins": "", "enable-admission-plugins": "ServiceAccount"},
	})
	wh := env.WebhookInstallOptions
	if len(wh.MutatingWebhooks) != 1 || len(wh.MutatingWebhooks[0].Webhooks) != 2 {
		t.Fatalf("config/webhook: want one configuration with two webhooks, got %+v", wh.MutatingWebhooks)
	}

	o := &serveOptions{}
	fs := flagSetFor(o)
	metricsAddr, probeAddr, statusAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	if err := fs.Parse([]string{
		"--webhook-host", wh.LocalServingHost, "--webhook-port", strconv.Itoa(wh.LocalServingPort),
		"--cert-dir", wh.LocalServingCertDir, "--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", probeAddr, "--injector-namespace", "tandem-system",
		"--discovery-addr", testenv.FreeAddr(t), "--status-addr", statusAddr,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitReady(t, "http://"+probeAddr+"/readyz", done)
	if !o.nativeResolved {
		t.Fatalf("--native-sidecar=auto chose classic sidecars against a 1.37 API server")
	}
	if code, _ := get(t, "http://"+probeAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}

	// Warnings reach the client as kubectl shows them.
	warnings := &warningRecorder{}
	withWarnings := rest.CopyConfig(cfg)
	withWarnings.WarningHandler = warnings
	cs := kubernetes.NewForConfigOrDie(withWarnings)
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	for name, labels := range map[string]map[string]string{
		"shop":          {"tandem.dev/inject": "enabled"},
		"plain":         nil,
		"tandem-system": {"tandem.dev/inject": "enabled"},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx2, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// What the service account controller would create.
		if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx2, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(ns, name string, labels, annotations map[string]string) (*corev1.Pod, error) {
		return cs.CoreV1().Pods(ns).Create(ctx2, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example/app:1"}},
				Containers:     []corev1.Container{{Name: "app", Image: "registry.example/app:1", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 50051}}}},
			},
		}, metav1.CreateOptions{})
	}
	mustCreate := func(ns, name string, labels, annotations map[string]string) *corev1.Pod {
		t.Helper()
		p, err := create(ns, name, labels, annotations)
		if err != nil {
			t.Fatalf("creating %s/%s: %v", ns, name, err)
		}
		return p
	}
	layout := func(p *corev1.Pod) string {
		return fmt.Sprintf("init=%v containers=%v", names(p.Spec.InitContainers), names(p.Spec.Containers))
	}
	const (
		untouched = "init=[migrate] containers=[app]"
		native    = "init=[tandem-init tandem-agent tandem-proxy migrate] containers=[app]"
		classic   = "init=[migrate tandem-init] containers=[tandem-proxy tandem-agent app]"
	)

	// Labeled namespace: the API server calls the webhook and accepts the
	// injected pod, in both layouts.
	nativePod := mustCreate("shop", "native", nil, nil)
	// The API server mounts the pod's token into the pod's own containers
	// only: the agent has its own, Envoy and the capture step none.
	for _, c := range append(nativePod.Spec.InitContainers, nativePod.Spec.Containers...) {
		podToken := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(m.Name, "kube-api-access-") })
		if podToken != (c.Name == "app" || c.Name == "migrate") {
			t.Errorf("%s: has the pod's token mounted: %v", c.Name, podToken)
		}
	}
	if got := layout(nativePod); got != native {
		t.Errorf("native: %s, want %s", got, native)
	}
	if p := mustCreate("shop", "classic", nil, map[string]string{"tandem.dev/native-sidecar": "false"}); layout(p) != classic {
		t.Errorf("classic: %s, want %s", layout(p), classic)
	} else if p.Annotations["kubectl.kubernetes.io/default-container"] != "app" {
		t.Errorf("classic: default container %q", p.Annotations["kubectl.kubernetes.io/default-container"])
	}
	proxylessPod := mustCreate("shop", "proxyless", nil, map[string]string{"tandem.dev/template": "proxyless"})
	if layout(proxylessPod) != "init=[tandem-agent migrate] containers=[app]" || proxylessPod.Spec.Containers[0].Env[2].Name != "GRPC_XDS_BOOTSTRAP_CONFIG" {
		t.Errorf("proxyless: %s %+v", layout(proxylessPod), proxylessPod.Spec.Containers[0].Env)
	}
	// The status endpoint: this replica, and the pods it injected, current.
	status := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", statusAddr)
	}}}
	replica, err := statusapi.GetReplica(ctx2, status)
	if err != nil || replica.Injection != "webhook" || !replica.Discovery || !replica.Ready || replica.Version == "" {
		t.Errorf("status endpoint's replica: %+v (%v); want the webhook, discovery ready, a version", replica, err)
	}
	verdicts, err := statusapi.Sidecars(ctx2, status, []corev1.Pod{*nativePod, *proxylessPod})
	if err != nil || len(verdicts) != 2 {
		t.Fatalf("status endpoint's verdicts: %+v (%v)", verdicts, err)
	}
	for _, v := range verdicts {
		if v.State != staleness.Current || v.InjectedBy != staleness.ByWebhook {
			t.Errorf("pod %s/%s, injected just now: %+v, want current, injected by the webhook", v.Namespace, v.Name, v.Verdict)
		}
	}
	// Opt-out, unlabeled namespace, the injector's own namespace: untouched.
	for _, c := range []struct {
		ns, name string
		labels   map[string]string
	}{
		{"shop", "opted-out", map[string]string{"tandem.dev/inject": "false"}},
		{"plain", "plain", nil},
		{"tandem-system", "own", map[string]string{"tandem.dev/inject": "true"}},
	} {
		if p := mustCreate(c.ns, c.name, c.labels, nil); layout(p) != untouched || p.Annotations["tandem.dev/status"] != "" {
			t.Errorf("%s/%s: %s, want untouched", c.ns, c.name, layout(p))
		}
	}
	// Opt-in in an unlabeled namespace.
	if p := mustCreate("plain", "opted-in", map[string]string{"tandem.dev/inject": "true"}, nil); layout(p) != native {
		t.Errorf("opt-in: %s, want %s", layout(p), native)
	}
	// Pods Tandem's sidecars cannot share, in a labeled namespace: admitted
	// as they are, and whoever created them is told why.
	for _, c := range []struct {
		name, warning string
		pod           corev1.PodSpec
		annotations   map[string]string
	}{
		{"meshed", `tandem: pod not injected: the pod is already in the Istio mesh (container "istio-proxy")`, corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "registry.example/app:1"}, {Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.22.0"}}}, nil},
		{"windows", "tandem: pod not injected: the pod runs on Windows (spec.os.name is windows)", corev1.PodSpec{OS: &corev1.PodOS{Name: corev1.Windows},
			Containers: []corev1.Container{{Name: "iis", Image: "mcr.microsoft.com/windows/servercore/iis:ltsc2022"}}}, nil},
	} {
		warnings.reset()
		p, err := cs.CoreV1().Pods("shop").Create(ctx2, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: c.name, Annotations: c.annotations}, Spec: c.pod}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s: %v", c.name, err)
		}
		if p.Annotations["tandem.dev/status"] != "" || slices.ContainsFunc(append(p.Spec.InitContainers, p.Spec.Containers...), func(c corev1.Container) bool { return strings.HasPrefix(c.Name, "tandem-") }) {
			t.Errorf("%s: injected: %s", c.name, layout(p))
		}
		if got := warnings.all(); len(got) != 1 || !strings.HasPrefix(got[0], c.warning) {
			t.Errorf("%s: the client got warnings %q, want one starting %q", c.name, got, c.warning)
		}
	}
	// An injected pod gets no warning.
	warnings.reset()
	mustCreate("shop", "quiet", nil, nil)
	if got := warnings.all(); len(got) != 0 {
		t.Errorf("an injected pod got warnings %q", got)
	}

	// An invalid annotation: the create fails with the injector's message.
	_, err = create("shop", "bad", nil, map[string]string{"traffic.tandem.dev/exclude-outbound-ports": "8080,99999"})
	if err == nil || !strings.Contains(err.Error(), `annotation traffic.tandem.dev/exclude-outbound-ports="8080,99999"`) ||
		!strings.Contains(err.Error(), "1 to 65535") {
		t.Errorf("invalid annotation: got %v", err)
	}
	// An injected pod applied again (here: the stored pod under a new name)
	// is left exactly as it is.
	again := nativePod.DeepCopy()
	again.ObjectMeta = metav1.ObjectMeta{Name: "again", Labels: again.Labels, Annotations: again.Annotations}
	again.Status = corev1.PodStatus{}
	stored, err := cs.CoreV1().Pods("shop").Create(ctx2, again, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if layout(stored) != native || stored.Annotations["tandem.dev/status"] != nativePod.Annotations["tandem.dev/status"] ||
		!slices.EqualFunc(stored.Spec.Volumes, nativePod.Spec.Volumes, func(a, b corev1.Volume) bool { return a.Name == b.Name }) {
		t.Errorf("re-applied injected pod changed: %s volumes %d", layout(stored), len(stored.Spec.Volumes))
	}

	// The requests are counted by result: five injected pods, one denied,
	// three skipped, by reason (the others never reach the webhook).
	_, metrics := get(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{
		`tandem_injector_requests_total{reason="",result="injected"} 5`,
		`tandem_injector_requests_total{reason="",result="denied"} 1`,
		`tandem_injector_requests_total{reason="already-injected",result="skipped"} 1`,
		`tandem_injector_requests_total{reason="other-mesh",result="skipped"} 1`,
		`tandem_injector_requests_total{reason="windows",result="skipped"} 1`,
		`tandem_injector_requests_total{reason="",result="error"} 0`,
		`tandem_injector_request_duration_seconds_count{result="injected"} 5`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(metrics, "tandem_injector_requests_total"))
		}
	}

	podSecurityAgainstAPIServer(t, cs)
}

// warningRecorder keeps the warnings the API server returns to a client.
type warningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = nil
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

func flagSetFor(o *serveOptions) *flagSet {
	fs := newFlagSet("serve")
	o.bind(fs)
	return fs
}

func waitReady(t *testing.T, url string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if code, _ := get(t, url); code == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 30s", url)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Flags that contradict each other stop serve before it starts, naming them.
func TestServeRefusesContradictoryFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cert-dir=/certs", "--cert-secret=s"}, "--cert-dir and --cert-secret"},
		{[]string{"--webhook-configuration=tandem-injector"}, "--webhook-configuration: needs --cert-secret"},
		{[]string{"--webhook-configuration=tandem-injector", "--cert-secret=s", "--webhook=false"}, "--webhook-configuration: needs --cert-secret and the webhook"},
	} {
		var stderr strings.Builder
		if code := runServe(c.args, nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("serve %v: exit %d, %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	o := &serveOptions{}
	fs := flagSetFor(o)
	if err := fs.Parse([]string{"--webhook-configuration=tandem-injector", "--cert-secret=s"}); err != nil {
		t.Fatal(err)
	}
	if err := o.check(fs); err != nil {
		t.Errorf("--webhook-configuration with --cert-secret: %v", err)
	}
}
