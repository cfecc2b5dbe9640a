package webhook

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/textdiff"
)

func ptr[T any](v T) *T { return &v }

// TestNotInjected: pods Tandem's sidecars cannot share are left exactly as
// they are, with a reason that names what is in the way.
func TestNotInjected(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	osTerm := func(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/os", Operator: op, Values: values}}}
	}
	affinity := func(terms ...corev1.NodeSelectorTerm) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
		}
	}
	annotate := func(k, v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations = map[string]string{k: v} }
	}
	container := func(init bool, c corev1.Container) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			if init {
				p.Spec.InitContainers = append(p.Spec.InitContainers, c)
			} else {
				p.Spec.Containers = append(p.Spec.Containers, c)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		reason Reason
		want   string // in the message; "" means injected
	}{
		{"Istio status", annotate("sidecar.istio.io/status", `{"containers":["istio-proxy"]}`), ReasonOtherMesh, "Istio mesh (annotation sidecar.istio.io/status)"},
		{"Istio proxy", container(false, corev1.Container{Name: "istio-proxy"}), ReasonOtherMesh, `Istio mesh (container "istio-proxy")`},
		{"Istio init", container(true, corev1.Container{Name: "istio-init"}), ReasonOtherMesh, `Istio mesh (container "istio-init")`},
		{"Linkerd version", annotate("linkerd.io/proxy-version", "stable-2.14.10"), ReasonOtherMesh, "Linkerd mesh (annotation linkerd.io/proxy-version)"},
		{"Linkerd proxy as native sidecar", container(true, corev1.Container{Name: "linkerd-proxy", RestartPolicy: &always}), ReasonOtherMesh, `Linkerd mesh (container "linkerd-proxy")`},
		{"Linkerd init", container(true, corev1.Container{Name: "linkerd-init"}), ReasonOtherMesh, `Linkerd mesh (container "linkerd-init")`},
		{"Consul status", annotate("consul.hashicorp.com/connect-inject-status", "injected"), ReasonOtherMesh, "Consul mesh"},
		{"Consul dataplane", container(false, corev1.Container{Name: "consul-dataplane"}), ReasonOtherMesh, `Consul mesh (container "consul-dataplane")`},
		{"Consul envoy", container(false, corev1.Container{Name: "envoy-sidecar"}), ReasonOtherMesh, `Consul mesh (container "envoy-sidecar")`},
		{"Consul init", container(true, corev1.Container{Name: "consul-connect-inject-init"}), ReasonOtherMesh, `Consul mesh (container "consul-connect-inject-init")`},
		{"Kuma injected", annotate("kuma.io/sidecar-injected", "true"), ReasonOtherMesh, "Kuma mesh (annotation kuma.io/sidecar-injected)"},
		{"Kuma sidecar", container(false, corev1.Container{Name: "kuma-sidecar"}), ReasonOtherMesh, `Kuma mesh (container "kuma-sidecar")`},
		{"Kuma init", container(true, corev1.Container{Name: "kuma-init"}), ReasonOtherMesh, `Kuma mesh (container "kuma-init")`},

		{"port of a container", container(false, corev1.Container{Name: "admin", Ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 15000}}}), ReasonPortClash, `container "admin" declares port 15000`},
		{"port of an init container", container(true, corev1.Container{Name: "setup", Ports: []corev1.ContainerPort{{ContainerPort: 15001}}}), ReasonPortClash, `container "setup" declares port 15001`},
		{"port of a native sidecar", container(true, corev1.Container{Name: "logs", RestartPolicy: &always, Ports: []corev1.ContainerPort{{ContainerPort: 15020}}}), ReasonPortClash, `container "logs" declares port 15020`},
		{"health port", container(false, corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 15021}}}), ReasonPortClash, "port 15021"},
		{"discovery port is not in the pod", container(false, corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 15012}}}), "", ""},
		{"UID of a container", container(false, corev1.Container{Name: "web", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(1337))}}), ReasonUIDClash, `container "web" runs as UID 1337 (its securityContext.runAsUser)`},
		{"UID of the pod", func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1337))} }, ReasonUIDClash, `container "c0" runs as UID 1337 (the pod's securityContext.runAsUser)`},
		{"UID of the pod, overridden by every container", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1337))}
			for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
				for i := range cs {
					cs[i].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr(int64(1000))}
				}
			}
		}, "", ""},

		{"Windows by os.name", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, ReasonWindows, "spec.os.name is windows"},
		{"Linux by os.name", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Linux} }, "", ""},
		{"Windows by node selector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"} }, ReasonWindows, "nodeSelector asks for kubernetes.io/os=windows"},
		{"Windows by the beta label", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"beta.kubernetes.io/os": "windows"} }, ReasonWindows, "beta.kubernetes.io/os=windows"},
		{"Windows by affinity", affinity(osTerm(corev1.NodeSelectorOpIn, "windows")), ReasonWindows, "every term of its required node affinity"},
		{"Windows by affinity, two terms", affinity(osTerm(corev1.NodeSelectorOpIn, "windows"), osTerm(corev1.NodeSelectorOpNotIn, "linux")), ReasonWindows, "required node affinity"},
		{"affinity letting Linux in by one term", affinity(osTerm(corev1.NodeSelectorOpIn, "windows"), osTerm(corev1.NodeSelectorOpIn, "linux")), "", ""},
		{"affinity on both systems", affinity(osTerm(corev1.NodeSelectorOpIn, "linux", "windows")), "", ""},
		{"affinity on another key", affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}}), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := pc0()
			tc.mutate(pod)
			before := canonical(t, mustJSON(t, pod))
			res, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !res.Injected {
					t.Fatalf("not injected: %s", res.Skipped)
				}
				return
			}
			if res.Injected || res.Reason != tc.reason || !strings.Contains(res.Skipped, tc.want) || !res.Selected {
				t.Fatalf("got injected=%v reason %q %q selected=%v, want reason %q with %q", res.Injected, res.Reason, res.Skipped, res.Selected, tc.reason, tc.want)
			}
			if got := canonical(t, mustJSON(t, pod)); got != before {
				t.Errorf("a skipped pod changed:\n%s", textdiff.Lines(before, got))
			}
		})
	}
}

// TestReinjectOptedOut: `inject` of a manifest injected before and now
// opted out removes the sidecars and says so.
func TestReinjectOptedOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		ns     string
		reason Reason
	}{
		{"label false", func(p *corev1.Pod) { p.Labels = map[string]string{"tandem.dev/inject": "false"} }, "shop", ReasonOptedOut},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "shop", ReasonHostNetwork},
		{"excluded namespace", func(*corev1.Pod) {}, "kube-system", ReasonSystemNamespace},
		{"now on Windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, "shop", ReasonWindows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ann := range []map[string]string{nil, {"tandem.dev/native-sidecar": "false"}, {"tandem.dev/template": "proxyless"}} {
				pod := pc0()
				pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
				tc.mutate(pod)
				for k, v := range ann {
					setAnnotation(pod, k, v)
				}
				want := canonical(t, mustJSON(t, pod))
				// Inject it as it was before the opt-out, then opt out.
				pod = pc0()
				pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
				for k, v := range ann {
					setAnnotation(pod, k, v)
				}
				inject(t, pod, nil)
				tc.mutate(pod)
				res, err := newTestInjector(t).Inject(pod, labeledNamespace(tc.ns), Reinject)
				if err != nil {
					t.Fatal(err)
				}
				if res.Injected || !res.Uninjected || res.Reason != tc.reason || res.Skipped == "" {
					t.Fatalf("%v: got %+v, want uninjected for %s", ann, res, tc.reason)
				}
				if got := canonical(t, mustJSON(t, pod)); got != want {
					t.Errorf("%v: the sidecars were not removed exactly:\n%s", ann, textdiff.Lines(want, got))
				}
			}
		})
	}
}

// TestEmptyStatus: a status listing nothing is a status: the webhook leaves
// the pod alone, re-injection injects it.
func TestEmptyStatus(t *testing.T) {
	pod := pc0()
	pod.Annotations = map[string]string{"tandem.dev/status": "{}"}
	res, err := newTestInjector(t).Inject(pod, labeledNamespace("shop"), Admission)
	if err != nil || res.Injected || res.Reason != ReasonAlreadyInjected {
		t.Fatalf("admission: %v %+v", err, res)
	}
	res, err = newTestInjector(t).Inject(pod, labeledNamespace("shop"), Reinject)
	if err != nil || !res.Injected {
		t.Fatalf("re-injection: %v %+v", err, res)
	}
	// Sidecars it does not list are refused, and the message says so.
	pod = pc0()
	pod.Annotations = map[string]string{"tandem.dev/status": "{}"}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "tandem-proxy"})
	_, err = newTestInjector(t).Inject(pod, labeledNamespace("shop"), Reinject)
	if !IsDenied(err) || !strings.Contains(err.Error(), `"tandem-proxy" that its tandem.dev/status annotation does not list`) {
		t.Errorf("got %v", err)
	}
}

// TestProxylessEveryContainer: init containers and native sidecars of the
// pod's own get the environment and mount too; Tandem's own do not.
func TestProxylessEveryContainer(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	for _, native := range []string{"true", "false"} {
		pod := pc0()
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "logs", RestartPolicy: &always})
		res := inject(t, pod, map[string]string{"tandem.dev/template": "proxyless", "tandem.dev/native-sidecar": native})
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			own := !slices.Contains(slices.Concat(res.Status.InitContainers, res.Status.Containers), c.Name)
			has := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GRPC_XDS_BOOTSTRAP_CONFIG" }) &&
				slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "tandem-run" })
			if has != own {
				t.Errorf("native=%s: container %s (the pod's own: %v) has the bootstrap and mount: %v", native, c.Name, own, has)
			}
		}
	}
}

// TestJobWarning: the classic layout on a pod that is to complete warns.
func TestJobWarning(t *testing.T) {
	for _, tc := range []struct {
		policy corev1.RestartPolicy
		native string
		warn   bool
	}{
		{corev1.RestartPolicyNever, "false", true},
		{corev1.RestartPolicyOnFailure, "false", true},
		{corev1.RestartPolicyAlways, "false", false},
		{"", "false", false},
		{corev1.RestartPolicyNever, "true", false},
	} {
		pod := pc0()
		pod.ObjectMeta = metav1.ObjectMeta{GenerateName: "report-", Namespace: "shop"}
		pod.Spec.RestartPolicy = tc.policy
		res := inject(t, pod, map[string]string{"tandem.dev/native-sidecar": tc.native})
		if got := len(res.Warnings) == 1 && strings.Contains(res.Warnings[0], "never completes") && strings.Contains(res.Warnings[0], `"report-<generated>"`); got != tc.warn {
			t.Errorf("restartPolicy %q native %s: warnings %q, want a Job warning: %v", tc.policy, tc.native, res.Warnings, tc.warn)
		}
	}
}
