package charts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// strictDecode decodes a cert-manager object into cert-manager's Go type,
// refusing unknown fields: the test API server has no cert-manager CRDs.
func strictDecode(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	var into any
	switch o.GetKind() {
	case "Issuer":
		into = &cmv1.Issuer{}
	case "Certificate":
		into = &cmv1.Certificate{}
	default:
		t.Fatalf("unexpected cert-manager kind %s", o.GetKind())
	}
	b, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Errorf("%s: %v", key(o), err)
	}
}

func apply(ctx context.Context, c client.Client, o *unstructured.Unstructured, opts ...client.PatchOption) error {
	return c.Patch(ctx, o.DeepCopy(), client.Apply, append(opts, client.FieldOwner("helm"), client.ForceOwnership)...)
}

// Every render is accepted by a real API server through server-side
// apply: the CRDs and namespaces for real, the rest as a dry run (each
// render on its own); cert-manager's objects, whose CRDs the test API server
// lacks, are decoded strictly into cert-manager's Go types instead.
func TestRendersAreAcceptedByTheAPIServer(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	c, err := client.New(cfg, client.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cfg)
	for _, ns := range []string{"tandem-system", "mesh-x"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range render(t, "tandem-crds", "tandem-system", nil) {
		if err := apply(ctx, c, o); err != nil {
			t.Fatalf("apply %s: %v", key(o), err)
		}
	}
	kinds := map[string]bool{}
	for _, ns := range []string{"tandem-system", "mesh-x"} {
		for _, rc := range renderCases {
			if ns != "tandem-system" && rc.Chart == "tandem-cni" {
				continue
			}
			t.Run(ns+"/"+rc.Name, func(t *testing.T) {
				for _, o := range render(t, rc.Chart, rc.Namespace(ns), valuesOf(t, rc)) {
					kinds[o.GetKind()] = true
					if o.GroupVersionKind().Group == "cert-manager.io" {
						strictDecode(t, o)
						continue
					}
					if err := apply(ctx, c, o, client.DryRunAll); err != nil {
						t.Errorf("server-side apply (dry run) of %s: %v", key(o), err)
					}
				}
			})
		}
	}
	for _, k := range []string{"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "MutatingWebhookConfiguration", "Issuer", "Certificate",
		"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("no render has a %s", k)
		}
	}
}

// In policy mode, a pod created in a labeled namespace after the charts
// are installed (server-side apply, as Helm 4 applies) comes out injected
// with the chart's sidecar values, with no Tandem process running: the API
// server injects it from the policies and their ConfigMap.
func TestPolicyInstallInjectsWithNoTandemProcess(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	c, err := client.New(cfg, client.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	const ns = "mesh"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objs := append(render(t, "tandem-crds", ns, nil), render(t, "tandem", ns, values(t, `
injection: {mode: policy}
capture: {mode: cni}
sidecar:
  logLevel: debug
  proxy:
    image: {repository: registry.example/envoy, tag: v9}
    resources: {requests: {cpu: 250m, memory: 200Mi}, limits: {cpu: 2, memory: 2Gi}}
  agent:
    image: {repository: registry.example/agent, tag: v9}
`))...)
	for _, o := range objs {
		if err := apply(ctx, c, o); err != nil {
			t.Fatalf("apply %s: %v", key(o), err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	newPod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}
	}
	// The API server loads policies asynchronously.
	poll.Eventually(t, time.Minute, func() error {
		p, err := cs.CoreV1().Pods("shop").Create(ctx, newPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if p.Annotations[wellknown.StatusAnnotation] == "" {
			return errors.New("the mutating policy is not active yet")
		}
		return nil
	})
	pod, err := cs.CoreV1().Pods("shop").Create(ctx, newPod("app"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := func(cs []corev1.Container) []string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return n
	}
	// Native sidecars (policy mode's auto), CNI capture: tandem-validate first.
	if got, want := names(pod.Spec.InitContainers), []string{wellknown.ValidateContainerName, wellknown.AgentContainerName, wellknown.ProxyContainerName}; !slices.Equal(got, want) {
		t.Fatalf("init containers %v, want %v (status %q)", got, want, pod.Annotations[wellknown.StatusAnnotation])
	}
	byName := map[string]corev1.Container{}
	for _, c := range pod.Spec.InitContainers {
		byName[c.Name] = c
	}
	proxy, agent := byName[wellknown.ProxyContainerName], byName[wellknown.AgentContainerName]
	if proxy.Image != "registry.example/envoy:v9" || agent.Image != "registry.example/agent:v9" {
		t.Errorf("images %s and %s, want the chart's", proxy.Image, agent.Image)
	}
	for res, want := range map[string]string{"requests.cpu": "250m", "requests.memory": "200Mi", "limits.cpu": "2", "limits.memory": "2Gi"} {
		kind, name, _ := strings.Cut(res, ".")
		list := proxy.Resources.Requests
		if kind == "limits" {
			list = proxy.Resources.Limits
		}
		if q := list[corev1.ResourceName(name)]; q.String() != want {
			t.Errorf("tandem-proxy %s = %s, want %s", res, q.String(), want)
		}
	}
	if !slices.Contains(agent.Args, "--log-level=debug") {
		t.Errorf("agent args %v lack the chart's log level", agent.Args)
	}
	// The release's namespace is never injected.
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, ns, "application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, wellknown.InjectLabel, wellknown.InjectLabelEnabled), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().Pods(ns).Create(ctx, newPod("own"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.InitContainers) > 0 {
		t.Errorf("a pod of the release's namespace was injected: %v", names(p.Spec.InitContainers))
	}
}
