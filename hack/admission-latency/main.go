// Command admission-latency measures what injection adds to pod creation on
// one local kube-apiserver: the same pods created sequentially in a
// namespace nothing injects, in one the webhook injects (served in this
// process, as `injector serve` serves it) and in one the admission policies
// inject, interleaved so all three see the same load. It prints the median
// and p99 of each and, from the API server's metrics (written to a file),
// how many admission checks each pod cost and how long they took.
//
//	make admission-latency            (KUBEBUILDER_ASSETS set by the target)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
	"github.com/tandem-mesh/tandem/webhook/admit"
)

const (
	nsNone    = "latency-none"
	nsWebhook = "latency-webhook"
	nsPolicy  = "latency-policy"
)

func main() {
	n := flag.Int("n", 500, "pods created per way")
	warmup := flag.Int("warmup", 50, "pods created per way before measuring")
	metricsFile := flag.String("metrics-file", "bin/admission-latency-metrics.txt", "file the API server's admission and CEL metrics are written to")
	profile := flag.String("profile", "", "after measuring, write a 20 s CPU profile of the API server creating pods through the admission policies to this file")
	flag.Parse()
	if err := run(*n, *warmup, *metricsFile, *profile); err != nil {
		fmt.Fprintf(os.Stderr, "admission-latency: %v\n", err)
		os.Exit(1)
	}
}

func run(n, warmup int, metricsFile, profile string) error {
	ctrl.SetLogger(logr.Discard())
	sel := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	fail, none, ifNeeded, equivalent := admissionv1.Fail, admissionv1.SideEffectClassNone, admissionv1.IfNeededReinvocationPolicy, admissionv1.Equivalent
	path := admit.Path
	timeout := int32(5)
	env, err := controlplane.New(controlplane.Options{WebhookInstall: envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionv1.MutatingWebhookConfiguration{{
			ObjectMeta: metav1.ObjectMeta{Name: "tandem-injector"},
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
			Webhooks: []admissionv1.MutatingWebhook{{
				Name:                    "namespace.inject.tandem.dev",
				AdmissionReviewVersions: []string{"v1"},
				ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Name: "tandem-webhook", Namespace: "tandem-system", Path: &path}},
				Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
				NamespaceSelector: sel(nsWebhook), MatchPolicy: &equivalent, FailurePolicy: &fail, SideEffects: &none,
				TimeoutSeconds: &timeout, ReinvocationPolicy: &ifNeeded,
			}},
		}},
	}})
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = env.Stop() }()

	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startWebhook(ctx, cfg, env, in); err != nil {
		return err
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	for _, ns := range []string{webhook.DefaultInjectorNamespace, nsNone, nsWebhook, nsPolicy} {
		labels := map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}
		if ns == nsNone {
			labels = nil
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	p, err := policy.Compile(in)
	if err != nil {
		return err
	}
	// The policies see only their namespace, the webhook only its own: the
	// bindings of labeled namespaces are narrowed to the policies' one (the
	// others select labeled pods of unlabeled namespaces, which none is).
	p.MutatingBindings[0].Spec.MatchResources.NamespaceSelector = sel(nsPolicy)
	p.ValidatingBindings[0].Spec.MatchResources.NamespaceSelector = sel(nsPolicy)
	if err := policy.Install(ctx, cs, p); err != nil {
		return err
	}
	for _, ns := range []string{nsWebhook, nsPolicy} {
		if err := waitInjected(ctx, cs, ns); err != nil {
			return err
		}
	}

	samples := map[string][]time.Duration{}
	ways := []string{nsNone, nsWebhook, nsPolicy}
	for i := 0; i < warmup+n; i++ {
		for _, ns := range ways {
			d, err := create(ctx, cs, ns, fmt.Sprintf("pod-%d", i))
			if err != nil {
				return err
			}
			if i >= warmup {
				samples[ns] = append(samples[ns], d)
			}
		}
	}
	base := percentile(samples[nsNone], 50)
	fmt.Printf("pod creation, %d sequential creations per way after %d warm-up, one kube-apiserver:\n", n, warmup)
	fmt.Printf("%-34s %10s %10s %16s\n", "", "median", "p99", "median added")
	for _, row := range []struct{ name, ns string }{
		{"no injection", nsNone}, {"webhook (in-process TLS server)", nsWebhook}, {"admission policies (CEL)", nsPolicy},
	} {
		s := samples[row.ns]
		fmt.Printf("%-34s %10s %10s %16s\n", row.name, round(percentile(s, 50)), round(percentile(s, 99)), round(percentile(s, 50)-base))
	}
	if err := reportMetrics(cfg, metricsFile, warmup+n); err != nil {
		return err
	}
	if profile != "" {
		return profilePolicies(ctx, cfg, cs, profile)
	}
	return nil
}

// profilePolicies writes a CPU profile of the API server while pods are
// created through the admission policies, one after another.
func profilePolicies(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, path string) error {
	const seconds = 20
	done := make(chan error, 1)
	go func() {
		b, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", fmt.Sprint(seconds)).Timeout(2 * seconds * time.Second).DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		done <- err
	}()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err == nil {
				fmt.Printf("CPU profile of the API server creating %d pods through the policies: %s (go tool pprof %s)\n", i, path, path)
			}
			return err
		default:
		}
		if _, err := create(ctx, cs, nsPolicy, fmt.Sprintf("profiled-%d", i)); err != nil {
			return err
		}
	}
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

func percentile(s []time.Duration, p int) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func create(ctx context.Context, cs kubernetes.Interface, ns, name string) (time.Duration, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	start := time.Now()
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("creating %s/%s: %w", ns, name, err)
	}
	_, injected := got.Annotations[wellknown.StatusAnnotation]
	if injected != (ns != nsNone) {
		return 0, fmt.Errorf("pod %s/%s: injected %t", ns, name, injected)
	}
	return d, nil
}

func waitInjected(ctx context.Context, cs kubernetes.Interface, ns string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe"},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if _, ok := pod.Annotations[wellknown.StatusAnnotation]; ok {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("namespace %s: pods are not injected after a minute", ns)
}

// startWebhook serves the webhook as `injector serve` does: a manager's
// webhook server, namespaces read from its cache.
func startWebhook(ctx context.Context, cfg *rest.Config, env *envtest.Environment, in *webhook.Injector) error {
	wh := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          ctrlwebhook.NewServer(ctrlwebhook.Options{Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir}),
	})
	if err != nil {
		return err
	}
	mgr.GetWebhookServer().Register(admit.Path, &admit.Handler{
		Injector: in, Namespaces: admit.ClientNamespaces{Reader: mgr.GetClient(), Live: mgr.GetAPIReader()},
	})
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "admission-latency: webhook: %v\n", err)
			os.Exit(1)
		}
	}()
	return nil
}

// reportMetrics writes the API server's admission and CEL metrics to path
// and prints what they say per pod: how many times each admission check ran
// and how long it took on average.
func reportMetrics(cfg *rest.Config, path string, creations int) error {
	body, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return fmt.Errorf("GET /metrics: %w", err)
	}
	var raw strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, "admission_policy") || strings.Contains(line, "apiserver_cel_") || strings.Contains(line, "admission_webhook_admission_duration_seconds") {
			raw.WriteString(line + "\n")
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(raw.String()), 0o644); err != nil {
		return err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	fmt.Printf("\nadmission checks the API server timed, per pod created (%d a way, warm-up included):\n", creations)
	fmt.Printf("%-44s %10s %14s\n", "", "per pod", "mean each")
	for _, row := range []struct{ name, family string }{
		{"webhook call", "apiserver_admission_webhook_admission_duration_seconds"},
		{"mutating policy: mutation expressions", "apiserver_mutating_admission_policy_check_duration_seconds"},
		{"validating policy: validations", "apiserver_validating_admission_policy_check_duration_seconds"},
	} {
		var count uint64
		var sum float64
		for _, m := range fams[row.family].GetMetric() {
			count += m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
		if count == 0 {
			fmt.Printf("%-44s %10s %14s\n", row.name, "-", "not reported")
			continue
		}
		fmt.Printf("%-44s %10.2f %14s\n", row.name, float64(count)/float64(creations), round(time.Duration(sum/float64(count)*float64(time.Second))))
	}
	fmt.Printf("(the API server's raw admission and CEL metrics: %s)\n", path)
	return nil
}
