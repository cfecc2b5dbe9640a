package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-mesh/tandem/internal/injectcmd"
	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

const injectorNamespace = "tandem-system"

func newInjector(t testing.TB) *webhook.Injector {
	t.Helper()
	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults(), InjectorNamespace: injectorNamespace})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// startWithPolicies runs an API server with the compiled policies installed
// and active, and no injector anywhere.
func startWithPolicies(t testing.TB, in *webhook.Injector) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	_, cfg := testenv.Start(t, testenv.Options{})
	cs := kubernetes.NewForConfigOrDie(cfg)
	p, err := policy.Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	install(t, cs, p)
	return cfg, cs
}

func install(t testing.TB, cs kubernetes.Interface, p *policy.Policies) {
	t.Helper()
	ctx := context.Background()
	ensureNamespace(t, cs, injectorNamespace, nil, nil)
	if err := policy.Install(ctx, cs, p); err != nil {
		t.Fatal(err)
	}

	// The API server loads policies asynchronously: wait until a dry run
	// is injected, and a bad annotation refused.
	ensureNamespace(t, cs, "policy-probe", map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}, nil)
	probe := func(annotations map[string]string) (*corev1.Pod, error) {
		return cs.CoreV1().Pods("policy-probe").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Annotations: annotations},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	poll.Eventually(t, time.Minute, func() error {
		pod, err := probe(nil)
		if err != nil {
			return err
		}
		if _, ok := pod.Annotations[wellknown.StatusAnnotation]; !ok {
			return errors.New("the mutating policy is not active yet")
		}
		if _, err := probe(map[string]string{wellknown.AnnotationLogLevel: "loud"}); err == nil {
			return errors.New("the validating policy is not active yet")
		}
		return nil
	})
}

func ensureNamespace(t testing.TB, cs kubernetes.Interface, name string, labels, annotations map[string]string) {
	t.Helper()
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{corev1.LabelMetadataName: name}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	ns.Annotations = annotations
	if _, err := cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// goldenCase is one input of the webhook's golden suite.
type goldenCase struct {
	name string
	ns   *corev1.Namespace
	pod  *corev1.Pod
}

func readGolden(t testing.TB) []goldenCase {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(root, "webhook", "testdata", "golden", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	for _, path := range paths {
		if strings.HasSuffix(path, ".golden.yaml") {
			continue
		}
		// The webhook suite's own reader, so both read a case alike.
		in := webhooktest.ReadCase(t, path)
		pod, err := webhooktest.DecodePod(in.Pod)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		c := goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".yaml"), pod: pod}
		if in.Namespace != nil {
			c.ns = &corev1.Namespace{ObjectMeta: *in.Namespace}
		}
		// The API server validates what the webhook's unit tests need not:
		// images, and a service account for the agent's projected token
		// (which the ServiceAccount admission plugin, off here, would name).
		// The same for both sides of the comparison.
		if c.pod.Spec.ServiceAccountName == "" {
			c.pod.Spec.ServiceAccountName = "default"
		}
		for _, list := range [][]corev1.Container{c.pod.Spec.InitContainers, c.pod.Spec.Containers} {
			for i := range list {
				if list[i].Image == "" {
					list[i].Image = "registry.example/app:1"
				}
			}
		}
		cases = append(cases, c)
	}
	if len(cases) < 20 {
		t.Fatalf("only %d golden cases found", len(cases))
	}
	return cases
}

// referenceNamespace is excluded from injection by name, so the webhook's
// result can be stored as it is for comparison.
const referenceNamespace = "kube-public"

// refusalDifferences are the golden cases whose refusal the policies word
// differently from the webhook, and why; docs/policy.md lists them too.
var refusalDifferences = map[string]string{}

// notCompiled are golden cases of webhook rules added after the compiler
// and not yet in the policies: their results are logged, not compared.
var notCompiled = map[string]string{}

// TestPolicies runs one API server with the policies installed and no
// injector anywhere, and creates pods through it.
func TestPolicies(t *testing.T) {
	in := newInjector(t)
	_, cs := startWithPolicies(t, in)
	t.Run("equivalence", func(t *testing.T) { testEquivalence(t, in, cs) })
	t.Run("reinvocation", func(t *testing.T) { testReinvocation(t, cs) })
	t.Run("params", func(t *testing.T) { testParams(t, cs) })
	t.Run("discovery", func(t *testing.T) { testDiscoveryParams(t, cs) })
}

// testEquivalence creates every pod of the webhook's golden suite through
// the policies and compares the result with the webhook's: the same pod
// (but for the status's configHash), or the same refusal.
func testEquivalence(t *testing.T, in *webhook.Injector, cs kubernetes.Interface) {
	ctx := context.Background()
	seen := map[string]bool{}
	// What renders now from the installed policies' parameters: every pod
	// the policies inject is current by it.
	params, err := cs.CoreV1().ConfigMaps(injectorNamespace).Get(ctx, policy.ParamsName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var flags injectcmd.Flags
	native, err := flags.FromParams(params.Data)
	if err != nil {
		t.Fatal(err)
	}
	fromParams, err := flags.Injector(native)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range readGolden(t) {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := notCompiled[c.name]; ok {
				t.Logf("not compared: the policies do not implement this webhook rule yet (%s)", why)
				return
			}
			nsName := c.pod.Namespace
			labels := map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}
			var annotations map[string]string
			if c.ns != nil {
				labels, annotations = c.ns.Labels, c.ns.Annotations
			}
			ensureNamespace(t, cs, nsName, labels, annotations)
			if labels[webhook.PodSecurityEnforceLabel] == "restricted" {
				meetRestricted(c.pod)
			}
			stored, err := cs.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}

			// The webhook's result, from the same mutation the webhook serves.
			want := c.pod.DeepCopy()
			res, werr := in.Inject(want, webhook.Namespace{Name: nsName, Labels: stored.Labels, Annotations: stored.Annotations}, webhook.Admission)

			got, perr := cs.CoreV1().Pods(nsName).Create(ctx, c.pod.DeepCopy(), metav1.CreateOptions{})
			if perr == nil {
				t.Cleanup(func() { deletePod(t, cs, got) })
			}
			switch {
			case werr != nil && !webhook.IsDenied(werr):
				t.Fatalf("webhook: %v", werr)
			case werr != nil:
				seen["refused"] = true
				if strings.Contains(werr.Error(), "enforces Pod Security") {
					seen["refused by Pod Security"] = true
				}
				if perr == nil {
					t.Fatalf("the webhook refuses the pod (%v), the policies create it", werr)
				}
				if !apierrors.IsForbidden(perr) {
					t.Errorf("refusal %v: want 403 Forbidden, as the webhook answers", perr)
				}
				same := strings.HasSuffix(perr.Error(), " denied request: "+werr.Error())
				if why, listed := refusalDifferences[c.name]; listed {
					if same {
						t.Errorf("listed as worded differently (%s), but the refusals agree: %s", why, werr)
					}
					t.Logf("known difference (%s):\nwebhook: %s\npolicy:  %s", why, werr, perr)
				} else if !same {
					t.Errorf("refusal differs:\nwebhook: %s\npolicy:  %s", werr, perr)
				}
				return
			case perr != nil:
				t.Fatalf("the webhook accepts the pod, the policies refuse it: %v", perr)
			}
			if res.Injected {
				if v := staleness.Check(fromParams, got, webhook.Namespace{Name: nsName, Labels: stored.Labels, Annotations: stored.Annotations}); v.State != staleness.Current || v.InjectedBy != staleness.ByPolicy {
					t.Errorf("the policy's pod is not current by the policies' parameters: %+v", v)
				}
				capture := wellknown.CaptureInit
				if slices.Contains(res.Status.InitContainers, wellknown.ValidateContainerName) {
					capture = wellknown.CaptureCNI
				}
				seen[res.Status.Template+fmt.Sprintf("/native=%t", res.Status.NativeSidecar)] = true
				if res.Status.Template == "envoy" {
					seen[fmt.Sprintf("envoy/native=%t/capture=%s", res.Status.NativeSidecar, capture)] = true
				}
			}

			// Store the webhook's result where nothing injects, then compare.
			want.Namespace = referenceNamespace
			ref, err := cs.CoreV1().Pods(referenceNamespace).Create(ctx, want, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("storing the webhook's result: %v", err)
			}
			t.Cleanup(func() { deletePod(t, cs, ref) })
			gotJSON, gotHash := comparable(t, got)
			wantJSON, wantHash := comparable(t, ref)
			// The one difference of every injected pod: CEL cannot hash the rendering.
			if res.Injected && (gotHash != "" || wantHash == "") {
				t.Errorf("configHash: policy %q, webhook %q; want empty from the policy, set by the webhook", gotHash, wantHash)
			}
			if gotJSON != wantJSON {
				t.Errorf("the policy's pod differs from the webhook's:\n%s", diff(wantJSON, gotJSON))
			}
		})
	}
	// Both templates in both layouts, the envoy template in both capture
	// modes of each layout, and refusals, are among the cases.
	for _, want := range []string{"envoy/native=true", "envoy/native=false", "proxyless/native=true", "proxyless/native=false",
		"envoy/native=true/capture=init", "envoy/native=false/capture=init", "envoy/native=true/capture=cni", "envoy/native=false/capture=cni",
		"refused", "refused by Pod Security"} {
		if !seen[want] {
			t.Errorf("no golden case covers %s", want)
		}
	}
}

// meetRestricted makes the golden pod's own containers meet Pod Security
// "restricted", which the API server enforces and the webhook's golden
// suite (no API server) does not model: what is compared is then whether
// the sidecars pass, and the injectors' own refusals.
func meetRestricted(pod *corev1.Pod) {
	for _, cs := range []([]corev1.Container){pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].SecurityContext != nil {
				continue
			}
			no, yes := false, true
			cs[i].SecurityContext = &corev1.SecurityContext{
				AllowPrivilegeEscalation: &no,
				RunAsNonRoot:             &yes,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}
		}
	}
}

func deletePod(t testing.TB, cs kubernetes.Interface, pod *corev1.Pod) {
	zero := int64(0)
	err := cs.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// comparable is the pod without what the API server sets per object and
// without the status's configHash, which it returns.
func comparable(t testing.TB, pod *corev1.Pod) (string, string) {
	t.Helper()
	var hash string
	p := pod.DeepCopy()
	p.Namespace, p.UID, p.ResourceVersion, p.ManagedFields, p.CreationTimestamp, p.Generation = "", "", "", nil, metav1.Time{}, 0
	if p.GenerateName != "" {
		p.Name = ""
	}
	if raw, ok := p.Annotations[wellknown.StatusAnnotation]; ok {
		// A status that is not the injector's JSON (a golden case) stays as it is.
		var st map[string]any
		if err := json.Unmarshal([]byte(raw), &st); err == nil {
			hash, _ = st["configHash"].(string)
			delete(st, "configHash")
			out, _ := json.Marshal(st)
			p.Annotations[wellknown.StatusAnnotation] = string(out)
		}
	}
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out), hash
}

// testReinvocation: another mutating policy changes the pod after
// injection, so the API server invokes Tandem's again; it must change
// nothing, and the pod gets the sidecars once.
func testReinvocation(t *testing.T, cs kubernetes.Interface) {
	ctx := context.Background()
	ensureNamespace(t, cs, "reinvoked", map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}, nil)
	other := &admissionv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-add-env"},
		Spec: admissionv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "reinvoked"}},
				ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}},
			},
			// Runs once, after Tandem's policy has injected or before it does.
			MatchConditions: []admissionv1.MatchCondition{{Name: "once", Expression: `!has(object.metadata.labels) || !("touched" in object.metadata.labels)`}},
			Mutations: []admissionv1.Mutation{{PatchType: admissionv1.PatchTypeJSONPatch, JSONPatch: &admissionv1.JSONPatch{
				Expression: `[JSONPatch{op: "add", path: "/metadata/labels", value: {"touched": "yes"}}]`,
			}}},
			ReinvocationPolicy: admissionv1.IfNeededReinvocationPolicy,
		},
	}
	ar := cs.AdmissionregistrationV1()
	if _, err := ar.MutatingAdmissionPolicies().Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.MutatingAdmissionPolicyBindings().Create(ctx, &admissionv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-add-env"},
		Spec:       admissionv1.MutatingAdmissionPolicyBindingSpec{PolicyName: "zz-add-env"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ar.MutatingAdmissionPolicyBindings().Delete(ctx, "zz-add-env", metav1.DeleteOptions{})
		_ = ar.MutatingAdmissionPolicies().Delete(ctx, "zz-add-env", metav1.DeleteOptions{})
	})
	var pod *corev1.Pod
	poll.Eventually(t, time.Minute, func() error {
		var err error
		pod, err = cs.CoreV1().Pods("reinvoked").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if pod.Labels["touched"] != "yes" {
			return errors.New("the other policy is not active yet")
		}
		return nil
	})
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "tandem-init,tandem-agent,tandem-proxy"; got != want {
		t.Errorf("init containers %s, want %s once", got, want)
	}
	if len(pod.Spec.Volumes) != 2 {
		t.Errorf("volumes %v, want tandem-run and tandem-token once", pod.Spec.Volumes)
	}
}

// testParams: the defaults are data; a new image in the ConfigMap reaches
// the next pod with no change to the policies.
func testParams(t *testing.T, cs kubernetes.Interface) {
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps(injectorNamespace)
	cm, err := cms.Get(ctx, policy.ParamsName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A value and a variant: the capture mode picks other containers.
	old, oldCapture := cm.Data["proxy-image"], cm.Data["capture"]
	cm.Data["proxy-image"] = "registry.example/envoy:next"
	cm.Data["capture"] = wellknown.CaptureCNI
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cm, err := cms.Get(ctx, policy.ParamsName, metav1.GetOptions{})
		if err == nil {
			cm.Data["proxy-image"], cm.Data["capture"] = old, oldCapture
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Error(err)
		}
	})
	ensureNamespace(t, cs, "params", map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}, nil)
	poll.Eventually(t, time.Minute, func() error {
		pod, err := cs.CoreV1().Pods("params").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		var names []string
		for _, c := range pod.Spec.InitContainers {
			names = append(names, c.Name)
		}
		if !slices.Contains(names, wellknown.ValidateContainerName) || slices.Contains(names, wellknown.InitContainerName) {
			return fmt.Errorf("init containers %v: want %s (capture %q in the params), not %s", names, wellknown.ValidateContainerName, wellknown.CaptureCNI, wellknown.InitContainerName)
		}
		for _, c := range pod.Spec.InitContainers {
			if c.Name == "tandem-proxy" {
				if c.Image != "registry.example/envoy:next" {
					return fmt.Errorf("tandem-proxy image %s", c.Image)
				}
				return nil
			}
		}
		return errors.New("no tandem-proxy")
	})
}

// testDiscoveryParams: discovery's address and CA, which the injector
// writes into the params while it runs, reach the next pod's agent as the
// webhook passes them (the flag, the CA in the environment, a token of
// discovery's audience), and only both together: an address alone leaves
// the agent on the API server.
func testDiscoveryParams(t *testing.T, cs kubernetes.Interface) {
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps(injectorNamespace)
	patch := func(data map[string]any) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"data": data})
		if _, err := cms.Patch(ctx, policy.ParamsName, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { patch(map[string]any{wellknown.ParamDiscoveryAddress: nil, wellknown.ParamDiscoveryCA: nil}) })
	ensureNamespace(t, cs, "discovery", map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}, nil)
	const address, ca = "tandem-discovery.tandem-system.svc:15012", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	agentOf := func() (arg, env string, audience bool, err error) {
		pod, err := cs.CoreV1().Pods("discovery").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return "", "", false, err
		}
		arg, env = webhook.AgentDiscovery(pod)
		for _, v := range pod.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil && src.ServiceAccountToken.Audience == wellknown.DiscoveryAudience {
					audience = true
				}
			}
		}
		return arg, env, audience, nil
	}

	patch(map[string]any{wellknown.ParamDiscoveryAddress: address})
	poll.Eventually(t, time.Minute, func() error {
		arg, env, audience, err := agentOf()
		if err == nil && (arg != "" || env != "" || audience) {
			err = fmt.Errorf("an address without a CA: the agent got --discovery-address=%q, CA %q, discovery token %v; want none", arg, env, audience)
		}
		return err
	})
	patch(map[string]any{wellknown.ParamDiscoveryCA: ca})
	poll.Eventually(t, time.Minute, func() error {
		arg, env, audience, err := agentOf()
		if err == nil && (arg != address || env != ca || !audience) {
			err = fmt.Errorf("address and CA: the agent got --discovery-address=%q, CA %q, discovery token %v", arg, env, audience)
		}
		return err
	})
}
