package staleness

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/injectcmd"
	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

func injector(t *testing.T, proxyImage string) *webhook.Injector {
	t.Helper()
	d := webhook.RecommendedDefaults()
	d.ProxyImage = proxyImage
	in, err := webhook.New(webhook.Config{Defaults: d})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

var shop = webhook.Namespace{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}

// injected is a pod as the API server stores it after in injected it:
// with the defaults the API server fills into the sidecars.
func injected(t *testing.T, in *webhook.Injector, ns webhook.Namespace, annotations map[string]string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns.Name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	res, err := in.Inject(pod, ns, webhook.Admission)
	if err != nil || !res.Injected {
		t.Fatalf("inject: %v %+v", err, res)
	}
	b, _ := json.Marshal(res.Status)
	pod.Annotations[wellknown.StatusAnnotation] = string(b)
	for _, list := range []*[]corev1.Container{&pod.Spec.InitContainers, &pod.Spec.Containers} {
		for i := range *list {
			c := &(*list)[i]
			c.TerminationMessagePath = corev1.TerminationMessagePathDefault
			c.ImagePullPolicy = corev1.PullIfNotPresent
			for j := range c.Env {
				if f := c.Env[j].ValueFrom; f != nil && f.FieldRef != nil {
					f.FieldRef.APIVersion = "v1"
				}
			}
		}
	}
	return pod
}

func withoutHash(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	st, _, err := webhook.ParseStatus(pod)
	if err != nil {
		t.Fatal(err)
	}
	st.ConfigHash = ""
	b, _ := json.Marshal(st)
	pod = pod.DeepCopy()
	pod.Annotations[wellknown.StatusAnnotation] = string(b)
	return pod
}

func TestCheck(t *testing.T) {
	now := injector(t, "envoyproxy/envoy:v1.40.0")
	later := injector(t, "envoyproxy/envoy:v1.40.1")
	pod := injected(t, now, shop, map[string]string{})
	policyPod := withoutHash(t, pod)
	proxyless := withoutHash(t, injected(t, now, shop, map[string]string{wellknown.AnnotationTemplate: "proxyless"}))
	// The app's own environment, which no verdict needs.
	for _, p := range []*corev1.Pod{proxyless, policyPod} {
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == "app" {
				p.Spec.Containers[i].Env = append(p.Spec.Containers[i].Env, corev1.EnvVar{Name: "DB_PASSWORD", Value: "secret"})
			}
		}
	}

	for _, tc := range []struct {
		name      string
		in        *webhook.Injector
		pod       *corev1.Pod
		ns        webhook.Namespace
		state, by string
		reason    []string
	}{
		{"WebhookCurrent", now, pod, shop, Current, ByWebhook, nil},
		{"WebhookStale", later, pod, shop, Stale, ByWebhook, []string{"config hash", "tandem-proxy.image: the pod has envoyproxy/envoy:v1.40.0, rendered now envoyproxy/envoy:v1.40.1"}},
		// The API server's defaults are no difference.
		{"PolicyCurrent", now, policyPod, shop, Current, ByPolicy, nil},
		{"PolicyStale", later, policyPod, shop, Stale, ByPolicy, []string{"tandem-proxy.image: the pod has envoyproxy/envoy:v1.40.0, rendered now envoyproxy/envoy:v1.40.1"}},
		{"ProxylessCurrent", now, proxyless, shop, Current, ByPolicy, nil},
		{"NamespaceTemplateChanged", now, pod, webhook.Namespace{Name: "shop", Labels: shop.Labels,
			Annotations: map[string]string{wellknown.AnnotationTemplate: "proxyless"}}, Stale, ByWebhook, []string{"template envoy", "proxyless now"}},
		{"NamespaceLogLevel", now, policyPod, webhook.Namespace{Name: "shop", Labels: shop.Labels,
			Annotations: map[string]string{wellknown.AnnotationLogLevel: "debug"}}, Stale, ByPolicy, []string{"tandem-agent"}},
		{"AnnotationInvalidNow", now, pod, webhook.Namespace{Name: "shop", Labels: shop.Labels,
			Annotations: map[string]string{wellknown.AnnotationProxyCPU: "lots"}}, Unknown, ByWebhook, []string{"would not render", "tandem.dev/proxy-cpu"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(tc.in, tc.pod, tc.ns)
			wantTemplate := "envoy"
			if tc.pod == proxyless {
				wantTemplate = "proxyless"
			}
			if v.State != tc.state || v.InjectedBy != tc.by || v.Template != wantTemplate || !v.NativeSidecar {
				t.Fatalf("verdict %+v, want %s injected by %s, template %s, native", v, tc.state, tc.by, wantTemplate)
			}
			// What Relevant keeps is all a verdict reads.
			if r := Check(tc.in, Relevant(tc.pod), tc.ns); r != v {
				t.Errorf("verdict of the relevant parts %+v, of the pod %+v", r, v)
			}
			for _, w := range tc.reason {
				if !strings.Contains(v.Reason, w) {
					t.Errorf("reason %q lacks %q", v.Reason, w)
				}
			}
			if tc.reason == nil && v.Reason != "" {
				t.Errorf("reason %q for a %s pod", v.Reason, v.State)
			}
		})
	}
	if v := Check(now, &corev1.Pod{}, shop); v.State != Unknown || v.Reason != "not injected" {
		t.Errorf("a pod without status: %+v", v)
	}
	b, _ := json.Marshal(Relevant(proxyless))
	if strings.Contains(string(b), "DB_PASSWORD") || !strings.Contains(string(b), "GRPC_XDS_BOOTSTRAP_CONFIG") {
		t.Errorf("the relevant parts of a proxyless pod keep the app's own environment, or lose the injected one:\n%s", b)
	}
}

// TestPolicyParamsRenderAsTheirInjector: the injection built from the
// admission policies' parameters (their ConfigMap, as `injector policy`
// writes it and the injector publishes discovery into it) renders what
// the injector they were compiled from renders.
func TestPolicyParamsRenderAsTheirInjector(t *testing.T) {
	var f injectcmd.Flags
	f.Defaults = webhook.RecommendedDefaults()
	f.Defaults.ProxyImage, f.Defaults.LogLevel, f.Defaults.ProxyCPULimit = "envoyproxy/envoy:v1.40.1", "warn", "2"
	f.Defaults.DiscoveryAddress, f.Defaults.DiscoveryCA = "tandem-discovery.tandem-system.svc:15012", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	orig, err := f.Injector(true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(orig)
	if err != nil {
		t.Fatal(err)
	}
	data := p.Params.Data
	// The injector publishes these two at run time.
	data[wellknown.ParamDiscoveryAddress], data[wellknown.ParamDiscoveryCA] = f.Defaults.DiscoveryAddress, f.Defaults.DiscoveryCA
	var g injectcmd.Flags
	native, err := g.FromParams(data)
	if err != nil {
		t.Fatal(err)
	}
	fromParams, err := g.Injector(native)
	if err != nil {
		t.Fatal(err)
	}
	pod := injected(t, orig, shop, map[string]string{})
	if v := Check(fromParams, pod, shop); v.State != Current {
		t.Fatalf("a pod of the original injector, checked against the parameters: %+v", v)
	}
	if _, err := g.FromParams(map[string]string{"proxy-imag": "x"}); err == nil || !strings.Contains(err.Error(), `"proxy-imag"`) {
		t.Errorf("an unknown key: %v", err)
	}
}
