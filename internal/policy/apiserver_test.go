package policy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/poll"
	"github.com/tandem-mesh/tandem/internal/testenv"
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
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
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
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c := goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".yaml")}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			switch meta.Kind {
			case "Namespace":
				c.ns = &corev1.Namespace{}
				err = yaml.UnmarshalStrict(doc, c.ns)
			case "Pod":
				c.pod = &corev1.Pod{}
				err = yaml.UnmarshalStrict(doc, c.pod)
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
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

// knownDifferences are the ways a pod created through the policies may
// differ from the webhook's result, by case; each is documented in
// docs/policy.md.
var knownDifferences = map[string]string{}

// TestEquivalence creates every pod of the webhook's golden suite through
// the policies, with no injector running, and compares the result with the
// webhook's: the same pod, or the same refusal.
func TestEquivalence(t *testing.T) {
	in := newInjector(t)
	_, cs := startWithPolicies(t, in)
	ctx := context.Background()
	for _, c := range readGolden(t) {
		t.Run(c.name, func(t *testing.T) {
			nsName := c.pod.Namespace
			labels := map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}
			var annotations map[string]string
			if c.ns != nil {
				labels, annotations = c.ns.Labels, c.ns.Annotations
			}
			ensureNamespace(t, cs, nsName, labels, annotations)
			stored, err := cs.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}

			// The webhook's result, from the same mutation the webhook serves.
			want := c.pod.DeepCopy()
			_, werr := in.Inject(want, webhook.Namespace{Name: nsName, Labels: stored.Labels, Annotations: stored.Annotations}, webhook.Admission)

			got, perr := cs.CoreV1().Pods(nsName).Create(ctx, c.pod.DeepCopy(), metav1.CreateOptions{})
			if perr == nil {
				t.Cleanup(func() { deletePod(t, cs, got) })
			}
			switch {
			case werr != nil && !webhook.IsDenied(werr):
				t.Fatalf("webhook: %v", werr)
			case werr != nil:
				if perr == nil {
					t.Fatalf("the webhook refuses the pod (%v), the policies create it", werr)
				}
				msg := perr.Error()
				const prefix = "admission webhook"
				_ = prefix
				if !strings.HasSuffix(msg, ": "+werr.Error()) {
					t.Errorf("refusal differs:\nwebhook: %s\npolicy:  %s", werr, msg)
				}
				return
			case perr != nil:
				t.Fatalf("the webhook accepts the pod, the policies refuse it: %v", perr)
			}

			// Store the webhook's result where nothing injects, then compare.
			want.Namespace = referenceNamespace
			ref, err := cs.CoreV1().Pods(referenceNamespace).Create(ctx, want, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("storing the webhook's result: %v", err)
			}
			t.Cleanup(func() { deletePod(t, cs, ref) })
			gotJSON, wantJSON := comparable(t, got), comparable(t, ref)
			if gotJSON != wantJSON {
				t.Errorf("the policy's pod differs from the webhook's:\n%s", diff(wantJSON, gotJSON))
			}
		})
	}
}

func deletePod(t testing.TB, cs kubernetes.Interface, pod *corev1.Pod) {
	zero := int64(0)
	err := cs.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// comparable is the pod without what the API server sets per object, and
// with the one documented difference checked and removed: the status's
// configHash, empty when the policy injected.
func comparable(t testing.TB, pod *corev1.Pod) string {
	t.Helper()
	p := pod.DeepCopy()
	p.Namespace, p.UID, p.ResourceVersion, p.ManagedFields, p.CreationTimestamp, p.Generation = "", "", "", nil, metav1.Time{}, 0
	if p.GenerateName != "" {
		p.Name = ""
	}
	if raw, ok := p.Annotations[wellknown.StatusAnnotation]; ok {
		var st map[string]any
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatalf("status annotation: %v", err)
		}
		delete(st, "configHash")
		out, _ := json.Marshal(st)
		p.Annotations[wellknown.StatusAnnotation] = string(out)
	}
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
