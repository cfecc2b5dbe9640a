package injectedpods

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/injectcmd"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// injector renders with the default flags but the proxy image.
func injector(t *testing.T, proxyImage string) *webhook.Injector {
	t.Helper()
	f := injectcmd.Flags{Defaults: webhook.RecommendedDefaults()}
	f.Defaults.ProxyImage = proxyImage
	in, err := f.Injector(true)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestPodsByVerdict: the injected pods the API server holds are counted
// current, then stale once the injection renders other sidecars; pods
// not injected, and finished ones, are not counted.
func TestPodsByVerdict(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	kube := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	discoverytest.ServiceAccount(t, kube, "shop", "default")
	before := injector(t, "envoyproxy/envoy:v1.40.0")
	create := func(name string, inject bool, phase corev1.PodPhase) {
		t.Helper()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
		if inject {
			res, err := before.Inject(pod, webhook.Namespace{Name: "shop", Labels: ns.Labels}, webhook.Admission)
			if err != nil || !res.Injected {
				t.Fatalf("inject: %v %+v", err, res)
			}
			b, _ := json.Marshal(res.Status)
			pod.Annotations[wellknown.StatusAnnotation] = string(b)
		}
		p, err := kube.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if phase != "" {
			p.Status.Phase = phase
			if _, err := kube.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create("a", true, "")
	create("b", true, corev1.PodRunning)
	create("done", true, corev1.PodSucceeded)
	create("plain", false, "")

	var now atomic.Pointer[webhook.Injector]
	now.Store(before)
	w, err := New(Options{Kube: kube,
		Injector: func(context.Context) (*webhook.Injector, error) { return now.Load(), nil },
		Namespace: func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Start(wctx)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w)
	want := func(current, stale int) string {
		return `
# HELP tandem_injector_pods Running and pending injected pods, by whether their sidecars are what the installed injection renders now (state: current, stale, unknown) and who injected them (injected_by: webhook, policy).
# TYPE tandem_injector_pods gauge
tandem_injector_pods{injected_by="policy",state="current"} 0
tandem_injector_pods{injected_by="policy",state="stale"} 0
tandem_injector_pods{injected_by="policy",state="unknown"} 0
tandem_injector_pods{injected_by="webhook",state="current"} ` + strconv.Itoa(current) + `
tandem_injector_pods{injected_by="webhook",state="stale"} ` + strconv.Itoa(stale) + `
tandem_injector_pods{injected_by="webhook",state="unknown"} 0
`
	}
	poll.Until(t, 30*time.Second, "two current pods", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(want(2, 0)), "tandem_injector_pods") == nil
	})
	now.Store(injector(t, "envoyproxy/envoy:v1.40.1"))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(0, 2)), "tandem_injector_pods"); err != nil {
		t.Fatalf("after the proxy image changed: %v", err)
	}
}
