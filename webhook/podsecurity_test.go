package webhook

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// TestPodSecurityOfInjectedPods evaluates injected pods with the Pod
// Security Admission library, the code the API server runs: in CNI mode
// every Tandem container meets "restricted" (the app here does too, so any
// violation is Tandem's); in init mode "baseline" already fails, because of
// tandem-init alone, which is why the injector refuses such namespaces.
func TestPodSecurityOfInjectedPods(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := newTestInjector(t)
	ns := Namespace{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
	for _, tc := range []struct {
		capture, native string
		level           api.Level
		allowed         bool
	}{
		{"cni", "true", api.LevelRestricted, true},
		{"cni", "false", api.LevelRestricted, true},
		{"init", "true", api.LevelBaseline, false},
		{"init", "false", api.LevelBaseline, false},
	} {
		t.Run(tc.capture+"/native="+tc.native, func(t *testing.T) {
			pod := restrictedApp()
			pod.Annotations = map[string]string{wellknown.AnnotationCapture: tc.capture, wellknown.AnnotationNativeSidecar: tc.native}
			if res, err := in.Inject(pod, ns, Admission); err != nil || !res.Injected {
				t.Fatalf("Inject: %+v, %v", res, err)
			}
			result := policy.AggregateCheckResults(eval.EvaluatePod(api.LevelVersion{Level: tc.level, Version: api.LatestVersion()}, &pod.ObjectMeta, &pod.Spec))
			if result.Allowed != tc.allowed {
				t.Fatalf("Pod Security %s allowed %v, want %v: %s", tc.level, result.Allowed, tc.allowed, result.ForbiddenDetail())
			}
			if !tc.allowed && (!strings.Contains(result.ForbiddenDetail(), wellknown.InitContainerName) || !strings.Contains(result.ForbiddenDetail(), "NET_ADMIN")) {
				t.Errorf("refused for another reason than tandem-init's NET_ADMIN: %s", result.ForbiddenDetail())
			}
		})
	}
}

// restrictedApp is a pod whose own container meets "restricted".
func restrictedApp() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1",
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot:             ptr(true),
				AllowPrivilegeEscalation: ptr(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		}}},
	}
}

func TestPodSecurityRefusalOnlyWhereEnforced(t *testing.T) {
	in := newTestInjector(t)
	for _, tc := range []struct {
		level, capture string
		wantDenied     bool
	}{
		{"", "init", false},
		{"privileged", "init", false},
		{"baseline", "init", true},
		{"restricted", "init", true},
		{"baseline", "cni", false},
		{"restricted", "cni", false},
	} {
		ns := Namespace{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
		if tc.level != "" {
			ns.Labels[PodSecurityEnforceLabel] = tc.level
		}
		pod := restrictedApp()
		pod.Annotations = map[string]string{wellknown.AnnotationCapture: tc.capture}
		_, err := in.Inject(pod, ns, Admission)
		if denied := IsDenied(err); denied != tc.wantDenied || (err != nil && !denied) {
			t.Errorf("level %q, capture %s: error %v, want denied %v", tc.level, tc.capture, err, tc.wantDenied)
		}
		if tc.wantDenied && err != nil && !strings.Contains(err.Error(), "tandem.dev/capture=cni") {
			t.Errorf("the refusal does not point to CNI mode: %v", err)
		}
	}
}
