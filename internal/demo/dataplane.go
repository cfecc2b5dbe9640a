package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/examples/greeter"
	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Names from the example's manifests.
const (
	serviceName  = "greeter"
	serverPrefix = "greeter-server-"
	clientPrefix = "greeter-client-"
)

type podAddr struct {
	name string
	ip   netip.Addr
}

// network is the demo's data plane once the pods have addresses.
type network struct {
	clusterIP  netip.AddrPort
	targetPort uint16
	servers    []podAddr
	client     podAddr
}

func (n *network) serverIPs() []netip.Addr {
	ips := make([]netip.Addr, len(n.servers))
	for i, s := range n.servers {
		ips[i] = s.ip
	}
	return ips
}

// admitPods plays scheduler and kubelet: every pod gets an address on this
// namespace's loopback and is reported Ready, and the real EndpointSlice
// controller publishes the servers behind the Service.
func admitPods(ctx context.Context, n *narrator, cs kubernetes.Interface, pods []corev1.Pod) (*network, error) {
	n.step("Playing kubelet: each pod gets an address and is marked Ready; the EndpointSlice controller publishes them")
	node := controlplane.NewNode(cs, "demo-node", nodeIP, podIPs)
	if err := node.Register(ctx); err != nil {
		return nil, err
	}
	net := &network{}
	var addrs []netip.Addr
	for i := range pods {
		ip, err := node.Admit(ctx, &pods[i])
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, ip)
		pa := podAddr{name: pods[i].Name, ip: ip}
		switch {
		case strings.HasPrefix(pa.name, serverPrefix):
			net.servers = append(net.servers, pa)
		case strings.HasPrefix(pa.name, clientPrefix):
			net.client = pa
		}
		n.detail("%-36s %s", pa.name, ip)
	}
	if len(net.servers) != 3 || !net.client.ip.IsValid() {
		return nil, fmt.Errorf("expected 3 %s* pods and one %s* pod, got %d servers", serverPrefix, clientPrefix, len(net.servers))
	}
	if err := netns.Setup(addrs, []netip.Prefix{serviceCIDR}); err != nil {
		return nil, err
	}
	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, serviceName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if len(svc.Spec.Ports) != 1 {
		return nil, fmt.Errorf("service %s has %d ports, the demo expects one", serviceName, len(svc.Spec.Ports))
	}
	port := svc.Spec.Ports[0]
	net.clusterIP = netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), uint16(port.Port))
	net.targetPort = targetPort(port, pods)
	err = waitFor(ctx, 30*time.Second, func() error {
		list, err := cs.DiscoveryV1().EndpointSlices(Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + serviceName})
		if err != nil {
			return retry(err)
		}
		ready := 0
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		if ready != 3 {
			return retry(fmt.Errorf("EndpointSlices of %s list %d ready endpoints, want 3", serviceName, ready))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	n.detail("Service %s: ClusterIP %s, 3 ready endpoints in its EndpointSlice", serviceName, net.clusterIP)
	return net, nil
}

// runClient runs the greeter client binary as the client pod's app would run,
// echoes its answers and counts them per backend pod.
func runClient(ctx context.Context, n *narrator, binDir, target string, requests int, env []string) (map[string]int, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "greeter-client"),
		"--target="+target, "--n="+strconv.Itoa(requests), "--name=world")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("greeter-client --target=%s: %w\n%s", target, err, stderr.String())
	}
	counts := map[string]int{}
	shown := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		backend, err := greeter.Backend(sc.Text())
		if err != nil {
			continue // the client's summary lines
		}
		counts[backend]++
		if shown < 12 {
			n.detail("%s", sc.Text())
			shown++
		}
	}
	if got := total(counts); got != requests {
		return counts, fmt.Errorf("greeter-client printed %d answers for %d requests:\n%s%s", got, requests, out, stderr.String())
	}
	if requests > shown {
		n.detail("... %d answers in all", requests)
	}
	return counts, nil
}

func total(c map[string]int) int {
	t := 0
	for _, v := range c {
		t += v
	}
	return t
}

// agentArgs are the flags the injected tandem-agent container runs with,
// pointed at the local API server, discovery (with the credentials
// discoveryCredentials wrote into work) and the demo's socket.
func agentArgs(c *controlplane.Cluster, net *network, socket, work string) []string {
	return []string{"run",
		"--kubeconfig=" + c.Kubeconfig,
		"--discovery-address=" + discoveryAddr,
		"--discovery-ca=" + filepath.Join(work, "discovery-ca.crt"),
		"--discovery-token=" + filepath.Join(work, "discovery-token"),
		"--node-id=" + net.client.name + "." + Namespace,
		"--xds-socket=" + socket,
		"--health-addr=127.0.0.1:" + strconv.Itoa(wellknown.AgentHealthPort),
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(wellknown.AgentMetricsPort),
	}
}

func readyURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/ready", wellknown.AgentHealthPort)
}

// balancedProxyless runs the agent in proxyless mode and the client with the
// gRPC xDS bootstrap the injector gives proxyless pods.
func balancedProxyless(ctx context.Context, n *narrator, procs *childproc.Group, o Options, c *controlplane.Cluster, net *network, work string) (map[string]int, error) {
	socket := filepath.Join(work, "xds.sock")
	agent, err := procs.Start("agent", work, exec.CommandContext(ctx, filepath.Join(o.BinDir, "agent"),
		append(agentArgs(c, net, socket, work), "--proxyless")...))
	if err != nil {
		return nil, err
	}
	if err := httpReady(ctx, readyURL(), 30*time.Second, agent); err != nil {
		return nil, err
	}
	n.detail("agent ready: the cluster's state from discovery (the injector, %s), xDS served on its Unix socket", discoveryAddr)
	bs, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: net.client.name + "." + Namespace, Cluster: Namespace, XDSSocket: socket})
	if err != nil {
		return nil, err
	}
	target := fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", serviceName, Namespace, net.clusterIP.Port())
	n.detail("client target %s", target)
	return runClient(ctx, n, o.BinDir, target, o.BalancedRequests, []string{"GRPC_XDS_BOOTSTRAP_CONFIG=" + bs})
}

// balancedThroughEnvoy installs the capture rules, runs the agent and Envoy
// as the proxy user, and the unchanged client against the ClusterIP.
func balancedThroughEnvoy(ctx context.Context, n *narrator, procs *childproc.Group, o Options, c *controlplane.Cluster, net *network, work string) (map[string]int, error) {
	runDir := filepath.Join(work, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(runDir, wellknown.ProxyUID, wellknown.ProxyGID); err != nil {
		return nil, err
	}
	if err := os.Chmod(c.Kubeconfig, 0o644); err != nil {
		return nil, err
	}
	socket := filepath.Join(runDir, "xds.sock")
	asProxy := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: wellknown.ProxyUID, Gid: wellknown.ProxyGID}}

	initCmd := exec.CommandContext(ctx, filepath.Join(o.BinDir, "agent"), "init")
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("agent init: %w\n%s", err, out)
	}
	n.detail("agent init: outbound TCP of every user but %d now goes to port %d", wellknown.ProxyUID, wellknown.ProxyOutboundPort)

	agentCmd := exec.CommandContext(ctx, filepath.Join(o.BinDir, "agent"), agentArgs(c, net, socket, work)...)
	agentCmd.SysProcAttr = asProxy
	agent, err := procs.Start("agent", work, agentCmd)
	if err != nil {
		return nil, err
	}
	bs, err := bootstrap.EnvoyJSON(bootstrap.EnvoyOptions{NodeID: net.client.name + "." + Namespace, Cluster: Namespace, XDSSocket: socket})
	if err != nil {
		return nil, err
	}
	envoyCmd := exec.CommandContext(ctx, o.Envoy, "--config-yaml", bs, "--disable-hot-restart", "--log-level", "warn")
	envoyCmd.SysProcAttr = asProxy
	if _, err := procs.Start("envoy", work, envoyCmd); err != nil {
		return nil, err
	}
	if err := httpReady(ctx, readyURL(), 60*time.Second, agent); err != nil {
		return nil, err
	}
	n.detail("Envoy has ACKed its listeners and clusters")
	return runClient(ctx, n, o.BinDir, net.clusterIP.String(), o.BalancedRequests, nil)
}

// targetPort resolves a Service port's targetPort, which may name a
// container port of the server pods, as the EndpointSlice controller does.
func targetPort(sp corev1.ServicePort, pods []corev1.Pod) uint16 {
	if p := sp.TargetPort.IntValue(); p != 0 {
		return uint16(p)
	}
	if sp.TargetPort.StrVal == "" {
		return uint16(sp.Port)
	}
	for _, pod := range pods {
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return uint16(cp.ContainerPort)
				}
			}
		}
	}
	return uint16(sp.Port)
}
