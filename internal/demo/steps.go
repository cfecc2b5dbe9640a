package demo

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

func versionOf(v *version.Info) string {
	if v == nil {
		return "(version unknown)"
	}
	return v.GitVersion
}

// discoveryAddr is where the demo's injector serves discovery.
var discoveryAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(wellknown.DiscoveryPort))

// startInjector runs the injector binary, webhook and discovery, on the
// address and certificate envtest registered the webhook with, and waits
// until both serve TLS. The certificate's CA goes next to it as ca.crt, as
// cert-manager writes it: discovery's agents verify it.
func startInjector(ctx context.Context, procs *childproc.Group, binDir string, c *controlplane.Cluster, work string) error {
	wh := c.Env.WebhookInstallOptions
	if err := os.WriteFile(filepath.Join(wh.LocalServingCertDir, "ca.crt"), wh.LocalServingCAData, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "injector"), "serve",
		"--kubeconfig="+c.Kubeconfig,
		"--cert-dir="+wh.LocalServingCertDir,
		"--discovery-addr="+discoveryAddr,
		"--agent-discovery-address="+discoveryAddr,
		"--webhook-host="+wh.LocalServingHost,
		"--webhook-port="+strconv.Itoa(wh.LocalServingPort),
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--injector-namespace=tandem-system",
	)
	proc, err := procs.Start("injector", work, cmd)
	if err != nil {
		return err
	}
	for _, addr := range []string{net.JoinHostPort(wh.LocalServingHost, strconv.Itoa(wh.LocalServingPort)), discoveryAddr} {
		if err := waitFor(ctx, 30*time.Second, func() error {
			if done, err := proc.Exited(); done {
				return fmt.Errorf("the injector exited (%v):\n%s", err, proc.Tail(20))
			}
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probing that it listens
			if err != nil {
				return retry(fmt.Errorf("the injector does not serve on %s yet: %w", addr, err))
			}
			conn.Close()
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// discoveryCredentials writes what an injected agent finds in its pod into
// work: the CA of discovery the injection gave the pods' agents (from the
// injector's certificate, by the webhook or through the admission
// policies' params) and a token of audience tandem-discovery for the pods'
// service account.
func discoveryCredentials(ctx context.Context, cs kubernetes.Interface, pods []corev1.Pod, work string) error {
	var ca string
	for i := range pods {
		addr, pem := webhook.AgentDiscovery(&pods[i])
		if addr != discoveryAddr || pem == "" {
			return fmt.Errorf("pod %s: its agent was given discovery %q (CA: %v), want %s with its CA", pods[i].Name, addr, pem != "", discoveryAddr)
		}
		ca = pem
	}
	tr, err := cs.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, "default", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{wellknown.DiscoveryAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("a token of audience %s for the demo's pods: %w", wellknown.DiscoveryAudience, err)
	}
	if err := os.WriteFile(filepath.Join(work, "discovery-token"), []byte(tr.Status.Token), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(work, "discovery-ca.crt"), []byte(ca), 0o644)
}

// applyExample creates the labeled namespace and every object the example's
// kustomization builds, in that namespace, as `kubectl apply -n demo -k dir`
// would.
func applyExample(ctx context.Context, cs kubernetes.Interface, c client.Client, dir string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   Namespace,
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled},
	}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	objs, err := manifests.Build(dir)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		obj.SetNamespace(Namespace)
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// waitForPods waits until the namespace has want pods and returns them by name.
func waitForPods(ctx context.Context, cs kubernetes.Interface, want int) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := waitFor(ctx, 60*time.Second, func() error {
		list, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return retry(err)
		}
		if len(list.Items) < want {
			return retry(fmt.Errorf("%d of %d pods created", len(list.Items), want))
		}
		pods = list.Items
		return nil
	})
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, err
}

// printPods shows each pod's containers, the injected ones next to the app's.
func printPods(n *narrator, pods []corev1.Pod) {
	fmt.Fprintf(n.w, "    %-36s %-46s %s\n", "POD", "INIT CONTAINERS (* = native sidecar)", "CONTAINERS")
	for _, p := range pods {
		var inits, mains []string
		for _, c := range p.Spec.InitContainers {
			name := c.Name
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				name += "*"
			}
			inits = append(inits, name)
		}
		for _, c := range p.Spec.Containers {
			mains = append(mains, c.Name)
		}
		fmt.Fprintf(n.w, "    %-36s %-46s %s\n", p.Name, strings.Join(inits, ","), strings.Join(mains, ","))
	}
}

// Injected reports whether the injector added its containers to pod.
func Injected(p *corev1.Pod) bool {
	has := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		has[c.Name] = true
	}
	return has[wellknown.AgentContainerName] && p.Annotations[wellknown.StatusAnnotation] != ""
}

// errRetry marks a condition that may still come true.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

func retry(err error) error { return errRetry{err} }

// waitFor polls cond until it returns nil, a non-retry error, or the timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond()
		if _, again := err.(errRetry); !again {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpReady polls url until it answers 200.
func httpReady(ctx context.Context, url string, timeout time.Duration, proc *childproc.Process) error {
	return waitFor(ctx, timeout, func() error {
		if done, err := proc.Exited(); done {
			return fmt.Errorf("%s exited (%v):\n%s", proc.Name, err, proc.Tail(20))
		}
		resp, err := http.Get(url) //nolint:noctx // bounded by waitFor
		if err != nil {
			return retry(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return retry(fmt.Errorf("%s answers %s", url, resp.Status))
		}
		return nil
	})
}
