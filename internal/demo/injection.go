package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// The ways the demo can inject pods.
const (
	// InjectionWebhook: the injector's admission webhook (config/default).
	InjectionWebhook = "webhook"
	// InjectionPolicy: admission policies the API server evaluates itself
	// (config/policy); the injector runs for its controllers only.
	InjectionPolicy = "policy"
)

func injectionDescription(mode string) string {
	if mode == InjectionPolicy {
		return "admission policies (config/policy): the API server injects pods itself, no webhook"
	}
	return "the injector's webhook (config/webhook)"
}

// webhookInstall is what envtest registers: the webhook of config/webhook,
// or nothing when the policies inject.
func webhookInstall(mode, root string) envtest.WebhookInstallOptions {
	if mode == InjectionPolicy {
		return envtest.WebhookInstallOptions{}
	}
	return envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}, LocalServingHost: "127.0.0.1"}
}

// startInjection starts the injector, and in policy mode first installs
// the policies `injector policy` prints, as a user would apply them.
func startInjection(ctx context.Context, n *narrator, procs *childproc.Group, o Options, c *controlplane.Cluster, cs kubernetes.Interface, objClient client.Client, work string) error {
	if o.Injection != InjectionPolicy {
		n.step("Starting the injector (%s) behind the webhook of config/webhook", filepath.Join(filepath.Base(o.BinDir), "injector"))
		if err := startInjector(ctx, procs, o.BinDir, c, work); err != nil {
			return err
		}
		n.detail("serving https://%s:%d%s with a certificate made for it; the API server calls it for every new pod",
			c.Env.WebhookInstallOptions.LocalServingHost, c.Env.WebhookInstallOptions.LocalServingPort, "/inject")
		n.detail("serving discovery on %s: the agents get the cluster's Services from it, not from the API server", discoveryAddr)
		return nil
	}
	n.step("Installing the admission policies printed by `injector policy` (as in config/policy)")
	out, err := exec.CommandContext(ctx, filepath.Join(o.BinDir, "injector"), "policy", "--injector-namespace=tandem-system").Output()
	if err != nil {
		return fmt.Errorf("injector policy: %w", err)
	}
	for _, ns := range []string{"tandem-system", Namespace} {
		labels := map[string]string{}
		if ns == Namespace {
			labels[wellknown.InjectLabel] = wellknown.InjectLabelEnabled
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	kinds, err := applyYAML(ctx, objClient, out)
	if err != nil {
		return err
	}
	n.detail("created %v", kinds)
	if err := waitFor(ctx, time.Minute, func() error {
		pod, err := cs.CoreV1().Pods(Namespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return retry(err)
		}
		if _, ok := pod.Annotations[wellknown.StatusAnnotation]; !ok {
			return retry(fmt.Errorf("the API server does not enforce the policies yet"))
		}
		return nil
	}); err != nil {
		return err
	}
	n.detail("the API server enforces them: a dry-run pod in %s comes back injected", Namespace)
	n.step("Starting the injector as config/policy runs it: its controllers and discovery, no webhook; nothing of Tandem's is on the pod-creation path")
	cmd := exec.CommandContext(ctx, filepath.Join(o.BinDir, "injector"), "serve", "--webhook=false",
		"--cert-secret="+policyCertSecret, "--policy-params="+policy.ParamsName,
		"--kubeconfig="+c.Kubeconfig,
		"--discovery-addr="+discoveryAddr, "--agent-discovery-address="+discoveryAddr,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--injector-namespace=tandem-system")
	proc, err := procs.Start("injector", work, cmd)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, func() error {
		if done, err := proc.Exited(); done {
			return fmt.Errorf("the injector exited (%v):\n%s", err, proc.Tail(20))
		}
		cm, err := cs.CoreV1().ConfigMaps("tandem-system").Get(ctx, policy.ParamsName, metav1.GetOptions{})
		if err != nil {
			return retry(err)
		}
		if cm.Data[wellknown.ParamDiscoveryCA] == "" {
			return retry(fmt.Errorf("the injector has not published discovery's CA in ConfigMap tandem-system/%s yet", policy.ParamsName))
		}
		return nil
	}); err != nil {
		return err
	}
	n.detail("it issued discovery's certificate into Secret tandem-system/%s and published its CA and address (%s) in the policies' params: new pods' agents follow discovery", policyCertSecret, discoveryAddr)
	return nil
}

// policyCertSecret holds discovery's certificate in policy mode, as in config/policy.
const policyCertSecret = "tandem-discovery-cert"

// applyYAML creates every object of a multi-document YAML stream and
// returns how many of each kind.
func applyYAML(ctx context.Context, c client.Client, data []byte) (map[string]int, error) {
	kinds := map[string]int{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err == io.EOF {
			return kinds, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		kinds[obj.GetKind()]++
	}
}
