// Package demo runs the seed experiment on one machine: a real control plane
// (etcd, kube-apiserver, kube-controller-manager), the real injector behind
// its webhook, the greeter example applied unchanged to a labeled namespace,
// then the same gRPC client twice — through a kube-proxy-style cluster IP,
// where one connection sticks to one pod, and through Tandem, where every
// request is balanced.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/kubeproxy"
	"github.com/tandem-mesh/tandem/internal/netns"
)

// Addresses of the demo's network namespace: documentation ranges only.
var (
	serviceCIDR = netip.MustParsePrefix("198.51.100.0/24") // ClusterIPs
	nodeIP      = netip.MustParseAddr("192.0.2.1")
	podIPs      = []netip.Addr{
		netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12"),
		netip.MustParseAddr("203.0.113.13"), netip.MustParseAddr("203.0.113.14"),
		netip.MustParseAddr("203.0.113.15"), netip.MustParseAddr("203.0.113.16"),
	}
)

// Namespace is where the example runs.
const Namespace = "demo"

// Options configure a run.
type Options struct {
	// Out receives the narration.
	Out io.Writer
	// BinDir holds the injector, agent and greeter-client binaries.
	BinDir string
	// DirectRequests and BalancedRequests are how many calls each run makes.
	DirectRequests, BalancedRequests int
	// DataPlane runs the traffic part; it needs its own network namespace
	// (the caller has entered one). Without it only injection is shown.
	DataPlane bool
	// Envoy is the path of an envoy binary; empty selects the proxyless path.
	Envoy string
	// Injection is InjectionWebhook (the default) or InjectionPolicy.
	Injection string
}

// Result is what a run observed.
type Result struct {
	// Pods of the namespace after injection.
	Pods []corev1.Pod
	// Direct and Balanced count answers per backend pod.
	Direct, Balanced map[string]int
	// Path is "envoy" or "proxyless": how the balanced run went.
	Path string
}

// Run performs the experiment. It stops every process it started and removes
// its files before returning, also when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Result, error) {
	n := &narrator{w: o.Out, start: time.Now()}
	fmt.Fprintf(o.Out, "Injection: %s\n", injectionDescription(o.Injection))
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	if o.DataPlane {
		// A fresh network namespace starts with loopback down.
		if err := netns.Setup(nil, nil); err != nil {
			return nil, err
		}
	}
	n.step("Starting a local control plane: etcd, kube-apiserver, kube-controller-manager")
	cluster, err := startCluster(root, o.Injection)
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		return nil, err
	}
	ver, _ := cs.Discovery().ServerVersion()
	n.detail("kube-apiserver %s is up; kube-controller-manager runs the %s", versionOf(ver), strings.Join(controlplane.ControllerManagerControllers, ", "))

	procs := &childproc.Group{}
	defer procs.StopAll()
	objClient, err := client.New(cluster.Config, client.Options{})
	if err != nil {
		return nil, err
	}
	if err := startInjection(ctx, n, procs, o, cluster, cs, objClient, work); err != nil {
		return nil, err
	}

	n.step("Creating namespace %s labeled tandem.dev/inject=enabled and applying examples/greeter unchanged", Namespace)
	if err := applyExample(ctx, cs, objClient, filepath.Join(root, "examples", "greeter", "k8s")); err != nil {
		return nil, err
	}
	pods, err := waitForPods(ctx, cs, 4)
	if err != nil {
		return nil, fmt.Errorf("%w\nkube-controller-manager:\n%s", err, cluster.ControllerManagerLog(15))
	}
	res := &Result{Pods: pods}
	printPods(n, pods)
	if err := discoveryCredentials(ctx, cs, pods, work); err != nil {
		return res, err
	}

	if !o.DataPlane {
		n.note("The data plane needs a network namespace (root or unprivileged user namespaces); skipped.")
		return res, nil
	}
	if err := runTraffic(ctx, n, procs, o, cluster, cs, pods, work, res); err != nil {
		return res, err
	}
	n.summary(res)
	return res, nil
}

// startCluster starts the demo's control plane: the API server advertises
// loopback and serves Services from serviceCIDR, with the webhook of
// config/webhook registered.
func startCluster(root, injection string) (*controlplane.Cluster, error) {
	return controlplane.StartCluster(controlplane.Options{
		APIServerFlags: map[string]string{
			"service-cluster-ip-range": serviceCIDR.String(),
			// The demo's network namespace has only loopback: advertise it,
			// and skip the endpoints of the kubernetes Service, which the
			// API server refuses to put on loopback and nothing here needs.
			"advertise-address":        "127.0.0.1",
			"endpoint-reconciler-type": "none",
			// As in a real cluster, pods run as a ServiceAccount (envtest
			// turns this plugin off); the agent's token volume needs one.
			"disable-admission-plugins": "",
			"enable-admission-plugins":  "ServiceAccount",
		},
		WebhookInstall: webhookInstall(injection, root),
	})
}

// runTraffic plays kubelet for the injected pods, then has the greeter
// client call the servers through a kube-proxy-style cluster IP and through
// Tandem, recording the answers per pod in res.
func runTraffic(ctx context.Context, n *narrator, procs *childproc.Group, o Options, cluster *controlplane.Cluster,
	cs kubernetes.Interface, pods []corev1.Pod, work string, res *Result) error {
	net, err := admitPods(ctx, n, cs, pods)
	if err != nil {
		return err
	}
	servers, err := startServers(net)
	if err != nil {
		return err
	}
	defer servers.stop()

	n.step("Without a sidecar: %d requests from greeter-client over one connection to the ClusterIP %s", o.DirectRequests, net.clusterIP)
	removeClusterIP, err := kubeproxy.InstallClusterIP(net.clusterIP.Addr(), net.clusterIP.Port(), net.serverIPs(), net.targetPort)
	if err != nil {
		return err
	}
	res.Direct, err = runClient(ctx, n, o.BinDir, net.clusterIP.String(), o.DirectRequests, nil)
	if err != nil {
		return err
	}
	n.counts(res.Direct)

	if o.Envoy != "" {
		res.Path = "envoy"
		n.step("With Tandem: the same client, its connection captured into Envoy (%s), fed by the agent", o.Envoy)
		// In a pod the cluster IP is resolved by Envoy, not by kube-proxy rules in its namespace.
		if err := removeClusterIP(); err != nil {
			return err
		}
		res.Balanced, err = balancedThroughEnvoy(ctx, n, procs, o, cluster, net, work)
	} else {
		res.Path = "proxyless"
		n.step("With Tandem: no envoy binary on PATH, so the proxyless path: the same client dials xds:/// and the agent serves it")
		res.Balanced, err = balancedProxyless(ctx, n, procs, o, cluster, net, work)
	}
	if err != nil {
		return err
	}
	n.counts(res.Balanced)
	return nil
}

// narrator prints the steps of the demo.
type narrator struct {
	w     io.Writer
	start time.Time
	n     int
}

func (n *narrator) step(format string, args ...any) {
	n.n++
	fmt.Fprintf(n.w, "\n[%d] %s\n", n.n, fmt.Sprintf(format, args...))
}

func (n *narrator) detail(format string, args ...any) {
	fmt.Fprintf(n.w, "    %s\n", fmt.Sprintf(format, args...))
}

func (n *narrator) note(format string, args ...any) {
	fmt.Fprintf(n.w, "\nNote: %s\n", fmt.Sprintf(format, args...))
}

func (n *narrator) counts(c map[string]int) {
	names := make([]string, 0, len(c))
	total := 0
	for k, v := range c {
		names = append(names, k)
		total += v
	}
	sort.Strings(names)
	fmt.Fprintf(n.w, "    answers per pod:\n")
	for _, k := range names {
		fmt.Fprintf(n.w, "      %-40s %4d  %s\n", k, c[k], strings.Repeat("#", c[k]*40/max(total, 1)))
	}
}

func (n *narrator) summary(r *Result) {
	fmt.Fprintf(n.w, "\nWithout a sidecar: %d of 3 server pods answered. With Tandem (%s): %d of 3 answered. (%.0fs)\n",
		len(r.Direct), r.Path, len(r.Balanced), time.Since(n.start).Seconds())
}
