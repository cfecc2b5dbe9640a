// Command scale measures discovery with real processes: a local
// kube-apiserver and etcd, the injector serving discovery, and agent
// processes. It prints what the API server pays as agents are added, how
// fast one EndpointSlice change reaches every agent and many lightweight
// subscribers, what an agent and discovery hold in memory, and how
// discovery's restart goes. `make scale` runs it.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

var (
	services    = flag.Int("services", 1000, "Services of 10 endpoints in the cluster")
	bigServices = flag.Int("big", 5000, "Services for the large measurements (0: skip)")
	agentSteps  = flag.String("agents", "1,10,100", "agent counts to measure the API server with")
	subscribers = flag.Int("subscribers", 1000, "lightweight xDS subscribers (0: skip)")
	changes     = flag.Int("changes", 20, "EndpointSlice changes timed")
)

const ns = "scale"

func main() {
	flag.Parse()
	// The table is the output: envtest's and client-go's own logging stays
	// out of it.
	ctrllog.SetLogger(logr.Discard())
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type harness struct {
	dir, bin   string
	kubeconfig string
	kube       kubernetes.Interface
	apiPID     int
	discAddr   string
	caFile     string
	token      string
	tokenSmall string
	injector   *exec.Cmd
	agents     []*agentProc
}

func run() error {
	dir, err := os.MkdirTemp("", "tandem-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	h := &harness{dir: dir, bin: filepath.Join(dir, "bin")}
	for _, c := range []string{"agent", "injector"} {
		out, err := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(h.bin, c), "./cmd/"+c).CombinedOutput()
		if err != nil {
			return fmt.Errorf("building %s: %v\n%s", c, err, out)
		}
	}
	fi, err := os.Stat(filepath.Join(h.bin, "agent"))
	if err != nil {
		return err
	}
	report("agent binary, stripped", "%.1f MB", float64(fi.Size())/1e6)

	// etcd and kube-apiserver only: nothing here needs the controllers.
	// Thousands of Services need more cluster IPs than envtest's default
	// /24. They are API data only: nothing here sends traffic to them, and
	// 198.18.0.0/15 is reserved for benchmarks.
	env, err := controlplane.New(controlplane.Options{APIServerFlags: map[string]string{"service-cluster-ip-range": "198.18.0.0/16"}})
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	admin, err := env.AddUser(envtest.User{Name: "scale-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	h.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(h.kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	// Thousands of objects are created here: no client-side rate limit.
	cfg.QPS = -1
	if h.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if h.apiPID, err = findPID("kube-apiserver", portOf(cfg.Host)); err != nil {
		return err
	}
	defer h.stopAll()
	if err = h.setup(); err == nil {
		err = h.measure()
	}
	if err != nil {
		h.printLogs()
	}
	return err
}

// logTo returns the log file of a child process; the logs are shown only
// when the measurement fails.
func (h *harness) logTo(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fatalf("scale: %v", err)
	}
	return f
}

// printLogs shows the end of every child's log that has anything in it.
func (h *harness) printLogs() {
	logs, _ := filepath.Glob(filepath.Join(h.dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintf(os.Stderr, "--- %s (last lines)\n%s\n", filepath.Base(l), strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
}

func (h *harness) setup() error {
	ctx := context.Background()
	for _, n := range []string{ns, "small", "tandem-system"} {
		if _, err := h.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if err := h.createServices(ns, 0, *services); err != nil {
		return err
	}
	if err := h.createServices("small", 0, 3); err != nil {
		return err
	}
	certs := filepath.Join(h.dir, "certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		return err
	}
	if _, err := testenv.WriteServingCerts(certs, "127.0.0.1"); err != nil {
		return err
	}
	h.caFile = filepath.Join(certs, "ca.crt")
	var err error
	if h.token, err = h.writeToken(ns); err != nil {
		return err
	}
	if h.tokenSmall, err = h.writeToken("small"); err != nil {
		return err
	}
	h.discAddr = freeAddr()
	return h.startInjector()
}

// createServices makes Services svc-<from>..svc-<to-1> with one slice of 10
// ready endpoints each.
func (h *harness) createServices(namespace string, from, to int) error {
	ctx := context.Background()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := from; i < to; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("svc-%d", i)
			addrs := make([]string, 10)
			for j := range addrs {
				addrs[j] = fmt.Sprintf("10.%d.%d.%d", 100+j, i/256%256, i%256)
			}
			_, err := h.kube.CoreV1().Services(namespace).Create(ctx, kubeobj.Service(namespace, name, "grpc", 50051, ""), metav1.CreateOptions{})
			if err == nil {
				_, err = h.kube.DiscoveryV1().EndpointSlices(namespace).Create(ctx, kubeobj.EndpointSlice(namespace, name+"-1", name, "grpc", 50051, addrs...), metav1.CreateOptions{})
			}
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func (h *harness) writeToken(namespace string) (string, error) {
	ctx := context.Background()
	if _, err := h.kube.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := h.kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "agent", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{wellknown.DiscoveryAudience}}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	path := filepath.Join(h.dir, namespace+".token")
	return path, os.WriteFile(path, []byte(tr.Status.Token), 0o600)
}

func (h *harness) startInjector() error {
	cmd := exec.Command(filepath.Join(h.bin, "injector"), "serve", "--webhook=false",
		"--kubeconfig="+h.kubeconfig, "--cert-dir="+filepath.Dir(h.caFile),
		"--discovery-addr="+h.discAddr, "--status-addr="+freeAddr(), "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--native-sidecar=true", "--injector-namespace=tandem-system", "--log-level=error")
	cmd.Stderr = h.logTo("injector")
	if err := cmd.Start(); err != nil {
		return err
	}
	h.injector = cmd
	return waitFor(60*time.Second, "discovery to serve", func() bool {
		c, err := tls.Dial("tcp", h.discAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probing that it listens
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (h *harness) stopInjector() {
	if h.injector != nil {
		h.injector.Process.Kill()
		h.injector.Wait()
		h.injector = nil
	}
}

type agentProc struct {
	cmd      *exec.Cmd
	launched time.Time
	metrics  string
	socket   string
	exited   chan struct{} // closed when the process has ended
	err      error
}

func (a *agentProc) running() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// startAgents starts n agents following scope ("" everything, else the
// namespaces) and waits until each serves from discovery.
func (h *harness) startAgents(n int, scope, token string) ([]*agentProc, error) {
	var out []*agentProc
	for i := range n {
		a := &agentProc{metrics: freeAddr(), socket: filepath.Join(h.dir, fmt.Sprintf("a%d-%d.sock", len(h.agents), i))}
		args := []string{"run", "--kubeconfig=" + h.kubeconfig, "--node-id=" + filepath.Base(a.socket),
			"--xds-socket=" + a.socket, "--health-addr=127.0.0.1:0", "--metrics-addr=" + a.metrics, "--debug-addr=" + freeAddr(),
			"--discovery-address=" + h.discAddr, "--discovery-ca=" + h.caFile, "--discovery-token=" + token,
			"--envoy-admin=http://127.0.0.1:1", "--log-level=error"}
		if scope != "" {
			args = append(args, "--watch-namespaces="+scope)
		}
		a.cmd = exec.Command(filepath.Join(h.bin, "agent"), args...)
		a.cmd.Stderr = h.logTo(filepath.Base(a.socket))
		a.launched = time.Now()
		if err := a.cmd.Start(); err != nil {
			return nil, err
		}
		a.exited = make(chan struct{})
		go func() { a.err = a.cmd.Wait(); close(a.exited) }()
		h.agents = append(h.agents, a)
		out = append(out, a)
	}
	for _, a := range out {
		if err := waitFor(120*time.Second, "an agent to serve from discovery", func() bool {
			return !a.running() || metric(a.metrics, "tandem_agent_source_discovery") == 1
		}); err != nil {
			return nil, err
		}
		if !a.running() {
			return nil, fmt.Errorf("agent %s ended before serving: %v", filepath.Base(a.socket), a.err)
		}
	}
	return out, nil
}

func (h *harness) stopAll() {
	h.stopAgents()
	h.stopInjector()
}

func (h *harness) stopAgents() {
	for _, a := range h.agents {
		a.cmd.Process.Kill()
		<-a.exited
	}
	h.agents = nil
}

func (h *harness) measure() error {
	rssOfInjector := func() float64 { return rssAnonMiB(h.injector.Process.Pid) }
	report("discovery (injector) anonymous RSS, no agents", "%.1f MiB at %d Services", rssOfInjector(), *services+3)
	// The API server's cost as agents are added.
	var steps []int
	for _, s := range strings.Split(*agentSteps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-agents %q: %v", *agentSteps, err)
		}
		steps = append(steps, n)
	}
	var all []*agentProc
	for _, n := range steps {
		cpu0 := cpuSeconds(h.apiPID)
		req0 := h.requests()
		start := time.Now()
		more, err := h.startAgents(n-len(all), "", h.token)
		if err != nil {
			return err
		}
		all = append(all, more...)
		took := time.Since(start)
		phases := startPhases(more)
		time.Sleep(5 * time.Second)
		report(fmt.Sprintf("API server with %d agents", n), "%d watches, %.2f CPU-s while %d agents started (%v), RSS %.0f MiB; requests: %s",
			h.watches(), cpuSeconds(h.apiPID)-cpu0, len(more), took.Round(time.Millisecond), rssAnonMiB(h.apiPID), since(req0, h.requests()))
		if len(more) >= 10 {
			report(fmt.Sprintf("%d agents started together, where the time went (s)", len(more)), "%s", phases)
		}
	}
	var rss []float64
	for _, a := range all {
		rss = append(rss, rssAnonMiB(a.cmd.Process.Pid))
	}
	report(fmt.Sprintf("agent anonymous RSS, %d Services, subscribed to all", *services+3), "%s", spread(rss))
	small, err := h.startAgents(3, "small", h.tokenSmall)
	if err != nil {
		return err
	}
	rss = nil
	for _, a := range small {
		rss = append(rss, rssAnonMiB(a.cmd.Process.Pid))
	}
	report("agent anonymous RSS, subscribed to 3 Services (namespace small)", "%s", spread(rss))

	// One EndpointSlice change reaching every agent.
	if err := h.propagation(all); err != nil {
		return err
	}
	if *subscribers > 0 {
		if err := h.lightweight(*subscribers); err != nil {
			return err
		}
		if err := h.together(*subscribers); err != nil {
			return err
		}
	}
	// Discovery's restart with the agents attached.
	before := make([]float64, len(all))
	for i, a := range all {
		before[i] = metric(a.metrics, "tandem_agent_discovery_received_bytes_total")
	}
	h.stopInjector()
	for _, a := range all {
		if err := waitFor(10*time.Second, "agents to see discovery gone", func() bool { return metric(a.metrics, "tandem_agent_discovery_connected") == 0 }); err != nil {
			return err
		}
	}
	if err := h.startInjector(); err != nil {
		return err
	}
	// Serving, not just listening: a stream is answered once the cache is
	// complete.
	if err := waitFor(60*time.Second, "discovery to answer a stream", func() bool {
		probe, err := h.subscribe(1, "small/*")
		if err == nil {
			probe.close()
		}
		return err == nil
	}); err != nil {
		return err
	}
	back := time.Now()
	for _, a := range all {
		if err := waitFor(30*time.Second, "agents back on discovery", func() bool { return metric(a.metrics, "tandem_agent_discovery_connected") == 1 }); err != nil {
			return err
		}
	}
	var sent []float64
	last := back
	for _, a := range all {
		if t := time.Unix(0, int64(metric(a.metrics, "tandem_agent_discovery_connected_since_seconds")*1e9)); t.After(last) {
			last = t
		}
	}
	for i, a := range all {
		got := metric(a.metrics, "tandem_agent_discovery_received_bytes_total") - before[i]
		sent = append(sent, got)
		if got >= 1000 {
			fmt.Printf("  agent %s received %.0f bytes after the restart (fallbacks %v, rebuilds %v)\n", filepath.Base(a.socket), got,
				metric(a.metrics, "tandem_agent_discovery_fallbacks_total"), metric(a.metrics, "tandem_agent_rebuilds_total"))
		}
	}
	report(fmt.Sprintf("discovery restart, %d agents", len(all)), "all re-synced %v after it served again (the last agent's stream answered); bytes received per unchanged agent: %s",
		last.Sub(back).Round(time.Millisecond), spread(sent))

	if *bigServices > *services {
		// Thousands of new Services would have every attached agent
		// re-translate everything again and again, which 100 agents on a
		// small machine cannot keep up with: fresh agents measure the
		// large cluster.
		h.stopAgents()
		if err := h.createServices(ns, *services, *bigServices); err != nil {
			return err
		}
		big, err := h.startAgents(3, "", h.token)
		if err != nil {
			return err
		}
		for _, a := range big {
			if err := waitFor(120*time.Second, "an agent to hold every Service", func() bool { return h.agentHas(a, *bigServices) }); err != nil {
				return err
			}
		}
		time.Sleep(3 * time.Second)
		rss = nil
		for _, a := range big {
			rss = append(rss, rssAnonMiB(a.cmd.Process.Pid))
		}
		report(fmt.Sprintf("agent anonymous RSS, %d Services, subscribed to all", *bigServices+3), "%s", spread(rss))
		if *subscribers > 0 {
			subs, err := h.subscribe(*subscribers, "*")
			if err != nil {
				return err
			}
			// Right after, the RSS holds the initial responses' send
			// buffers; the Go runtime returns them over the next minutes.
			now := rssOfInjector()
			time.Sleep(60 * time.Second)
			report(fmt.Sprintf("discovery anonymous RSS, %d Services, %d subscribers + %d agents", *bigServices+3, *subscribers, len(big)),
				"%.0f MiB once all were answered, %.0f MiB a minute later", now, rssOfInjector())
			subs.close()
		}
	}
	return nil
}

// agentHas reports whether an agent serves the cluster of svc-<n-1>.
func (h *harness) agentHas(a *agentProc, n int) bool {
	want := fmt.Sprintf("svc-%d.%s.svc", n-1, ns)
	return slices.ContainsFunc(agentMetrics(a.metrics)["tandem_xds_cluster_endpoints"].GetMetric(), func(m *dto.Metric) bool {
		return strings.Contains(label(m, "cluster"), want)
	})
}

// propagation times EndpointSlice changes of svc-0 until each agent
// serves the new endpoints, read from its xDS socket.
func (h *harness) propagation(agents []*agentProc) error {
	cluster := fmt.Sprintf("outbound|50051||svc-0.%s.svc.cluster.local", ns)
	watchers := make([]*edsWatcher, len(agents))
	for i, a := range agents {
		w, err := watchEDS(a.socket, cluster)
		if err != nil {
			return err
		}
		defer w.close()
		watchers[i] = w
	}
	ctx := context.Background()
	var lat []float64
	cpu := func() float64 {
		total := cpuSeconds(h.injector.Process.Pid)
		for _, a := range agents {
			total += cpuSeconds(a.cmd.Process.Pid)
		}
		return total
	}
	cpu0 := cpu()
	for c := range *changes {
		sl, err := h.kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, "svc-0-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := 10 - c%2 // alternate 9 and 10 endpoints
		addrs := make([]string, want)
		for j := range addrs {
			addrs[j] = fmt.Sprintf("10.100.0.%d", j+1)
		}
		kubeobj.SetAddresses(sl, addrs...)
		start := time.Now()
		if _, err := h.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			return err
		}
		for _, w := range watchers {
			d, err := w.waitFor(want, start, 10*time.Second)
			if err != nil {
				return err
			}
			lat = append(lat, d.Seconds()*1000)
		}
	}
	report(fmt.Sprintf("one EndpointSlice change reaching %d agents (%d changes)", len(agents), *changes), "%s ms; discovery and agents used %.0f CPU-ms per change",
		percentiles(lat), (cpu()-cpu0)*1000/float64(*changes))
	return nil
}

// lightweight times a change reaching n plain delta xDS subscribers of
// the changed Service's namespace.
func (h *harness) lightweight(n int) error {
	subs, err := h.subscribe(n, ns+"/*")
	if err != nil {
		return err
	}
	defer subs.close()
	ctx := context.Background()
	var lat []float64
	self := os.Getpid()
	disc0, self0 := cpuSeconds(h.injector.Process.Pid), cpuSeconds(self)
	for c := range 5 {
		sl, err := h.kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, "svc-1-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		addrs := make([]string, 8+c%2)
		for j := range addrs {
			addrs[j] = fmt.Sprintf("10.100.1.%d", j+1)
		}
		kubeobj.SetAddresses(sl, addrs...)
		subs.expect(resource.Name(ns, "svc-1"))
		start := time.Now()
		if _, err := h.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			return err
		}
		got, err := subs.wait(start, 20*time.Second)
		if err != nil {
			return err
		}
		lat = append(lat, got...)
	}
	report(fmt.Sprintf("one EndpointSlice change reaching %d lightweight subscribers (5 changes)", n), "%s ms; CPU-ms per change: discovery %.0f, the subscribers (this process) %.0f",
		percentiles(lat), (cpuSeconds(h.injector.Process.Pid)-disc0)*200, (cpuSeconds(self)-self0)*200)
	return nil
}

// together times n streams opened at once until each has its first
// response, as when a fleet reconnects: with tokens bound to pods, as the
// agents' projected tokens are (checked by discovery itself), and with
// tokens bound to no pod (each reviewed by the API server).
func (h *harness) together(n int) error {
	ctx := context.Background()
	bound := make([]string, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pod, err := h.kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("agent-%d", i)},
				Spec:       corev1.PodSpec{ServiceAccountName: "agent", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			}, metav1.CreateOptions{})
			var tr *authnv1.TokenRequest
			if err == nil {
				tr, err = h.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "agent", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
					Audiences:      []string{wellknown.DiscoveryAudience},
					BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				}}, metav1.CreateOptions{})
			}
			if err == nil {
				bound[i] = tr.Status.Token
			}
			mu.Lock()
			first = cmp.Or(first, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	// Discovery sees the new pods through its watch before they connect.
	time.Sleep(2 * time.Second)
	unbound, err := os.ReadFile(h.token)
	if err != nil {
		return err
	}
	for _, run := range []struct {
		what   string
		tokens []string
	}{
		{"bound to their pods", bound},
		{"bound to no pod (reviewed)", slices.Repeat([]string{strings.TrimSpace(string(unbound))}, n)},
	} {
		req0 := h.requests()
		cpu0 := cpuSeconds(h.injector.Process.Pid)
		start := time.Now()
		subs, err := h.subscribeWith(run.tokens, "*")
		if err != nil {
			return err
		}
		took := time.Since(start)
		cpu := cpuSeconds(h.injector.Process.Pid) - cpu0
		subs.close()
		report(fmt.Sprintf("%d streams opened at once, tokens %s", n, run.what), "all answered after %v; discovery %.2f CPU-s; API server requests: %s",
			took.Round(time.Millisecond), cpu, cmp.Or(since(req0, h.requests()), "none"))
	}
	return nil
}

// startPhases breaks the start of agents down, from their own metrics:
// launched until discovery's first answer
// (tandem_agent_discovery_connected_since_seconds: the process's start, TLS,
// the token's check, the first push), then until the first configuration
// was published (decoding and the first translation), each as median/max
// over the agents, and the whole as the last agent's.
func startPhases(agents []*agentProc) string {
	var connect, translate []float64
	var last time.Time
	for _, a := range agents {
		m := agentMetrics(a.metrics)
		get := func(name string) time.Time {
			if ms := m[name].GetMetric(); len(ms) > 0 {
				return time.Unix(0, int64(value(ms[0])*1e9))
			}
			return time.Time{}
		}
		conn, pub := get("tandem_agent_discovery_connected_since_seconds"), get("tandem_agent_configuration_published_at_seconds")
		if conn.IsZero() || pub.IsZero() {
			continue
		}
		connect = append(connect, conn.Sub(a.launched).Seconds())
		translate = append(translate, pub.Sub(conn).Seconds())
		if pub.After(last) {
			last = pub
		}
	}
	if len(connect) == 0 {
		return "not reported by the agents"
	}
	mm := func(v []float64) string {
		slices.Sort(v)
		return fmt.Sprintf("%.2f/%.2f", v[len(v)/2], v[len(v)-1])
	}
	return fmt.Sprintf("launched → discovery answered %s, → first configuration %s (median/max); the last agent served %.1f s after the first was launched",
		mm(connect), mm(translate), last.Sub(agents[0].launched).Seconds())
}

// subscribers are plain delta xDS streams to discovery.
type subscriberSet struct {
	mu      sync.Mutex
	name    string
	arrived []time.Time
	conns   []*grpc.ClientConn
	cancel  context.CancelFunc
}

func (h *harness) subscribe(n int, sub string) (*subscriberSet, error) {
	token, err := os.ReadFile(h.token)
	if err != nil {
		return nil, err
	}
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = strings.TrimSpace(string(token))
	}
	return h.subscribeWith(tokens, sub)
}

// subscribeWith opens a stream per token, all at once, and returns when
// each has had its first response.
func (h *harness) subscribeWith(tokens []string, sub string) (*subscriberSet, error) {
	n := len(tokens)
	pem, err := os.ReadFile(h.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscriberSet{cancel: cancel}
	ready := make(chan error, n)
	for i := range n {
		conn, err := grpc.NewClient(h.discAddr,
			grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
			grpc.WithPerRPCCredentials(bearer(tokens[i])))
		if err != nil {
			cancel()
			return nil, err
		}
		s.conns = append(s.conns, conn)
		go func() {
			st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
			if err == nil {
				err = st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("sub-%d", i)}, TypeUrl: resource.TypeURL, ResourceNamesSubscribe: []string{sub}})
			}
			first := true
			for err == nil {
				var resp *discoverygrpc.DeltaDiscoveryResponse
				if resp, err = st.Recv(); err != nil {
					break
				}
				now := time.Now()
				s.mu.Lock()
				for _, r := range resp.Resources {
					if r.Name == s.name {
						s.arrived = append(s.arrived, now)
					}
				}
				s.mu.Unlock()
				err = st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.TypeURL, ResponseNonce: resp.Nonce})
				if first {
					ready <- nil
					first = false
				}
			}
			if first {
				ready <- err
			}
		}()
	}
	for range n {
		if err := <-ready; err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *subscriberSet) expect(name string) {
	s.mu.Lock()
	s.name, s.arrived = name, nil
	s.mu.Unlock()
}

func (s *subscriberSet) wait(start time.Time, limit time.Duration) ([]float64, error) {
	n := len(s.conns)
	err := waitFor(limit, "every subscriber to get the change", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.arrived) >= n
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []float64
	for _, t := range s.arrived {
		out = append(out, t.Sub(start).Seconds()*1000)
	}
	return out, err
}

func (s *subscriberSet) close() {
	s.cancel()
	for _, c := range s.conns {
		c.Close()
	}
}

// edsWatcher follows one ClusterLoadAssignment on an agent's xDS socket.
type edsWatcher struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	mu     sync.Mutex
	counts []int
	times  []time.Time
}

func (w *edsWatcher) close() { w.cancel(); w.conn.Close() }

// watchEDS subscribes to one ClusterLoadAssignment of an agent over ADS
// and records the endpoint count of every response.
func watchEDS(socket, cluster string) (*edsWatcher, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &edsWatcher{conn: conn, cancel: cancel}
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		err = st.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "scale"}, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster}})
	}
	if err != nil {
		w.close()
		return nil, err
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			for _, r := range resp.Resources {
				var cla endpointv3.ClusterLoadAssignment
				if r.UnmarshalTo(&cla) == nil && cla.ClusterName == cluster {
					n := 0
					for _, l := range cla.Endpoints {
						n += len(l.LbEndpoints)
					}
					w.mu.Lock()
					w.counts, w.times = append(w.counts, n), append(w.times, now)
					w.mu.Unlock()
				}
			}
			if st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster},
				VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}) != nil {
				return
			}
		}
	}()
	return w, nil
}

// bearer sends a token with each stream.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

func (w *edsWatcher) waitFor(endpoints int, since time.Time, limit time.Duration) (time.Duration, error) {
	var d time.Duration
	err := waitFor(limit, fmt.Sprintf("an agent to serve %d endpoints", endpoints), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i := len(w.counts) - 1; i >= 0; i-- {
			if w.times[i].After(since) && w.counts[i] == endpoints {
				d = w.times[i].Sub(since)
				return true
			}
		}
		return false
	})
	return d, err
}

func fatalf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...); os.Exit(1) }

func report(what, format string, args ...any) {
	fmt.Printf("%-72s %s\n", what, fmt.Sprintf(format, args...))
}

func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf("median %.1f, min %.1f, max %.1f", s[len(s)/2], s[0], s[len(s)-1])
}

func percentiles(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %.1f, p99 %.1f, max %.1f (n=%d)", at(0.5), at(0.99), s[len(s)-1], len(s))
}

func waitFor(limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// nextPort is the next port freeAddr tries. Ports come from below the
// kernel's ephemeral range: a port the kernel picked for ":0" can be taken
// by one of the hundreds of outgoing connections the agents open between
// the check and the process binding it.
var nextPort = ephemeralStart() - 10000

func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11024 {
				return n
			}
		}
	}
	return 32768
}

func freeAddr() string {
	for limit := ephemeralStart(); nextPort < limit; {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nextPort))
		nextPort++
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	fatalf("no free port below the ephemeral range")
	return ""
}

func portOf(host string) string {
	i := strings.LastIndex(host, ":")
	return strings.TrimRight(host[i+1:], "/")
}

// findPID finds the process whose command line names binary and port.
func findPID(binary, port string) (int, error) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := string(b)
		if strings.Contains(cmd, binary) && strings.Contains(cmd, "secure-port\x00"+port) || strings.Contains(cmd, binary) && strings.Contains(cmd, "secure-port="+port) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process with port %s", binary, port)
}

func rssAnonMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return -1
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return float64(ut+st) / 100
}

// watches counts the API server's open watch requests.
func (h *harness) watches() int {
	total := 0.0
	for _, m := range h.apiMetrics()["apiserver_longrunning_requests"].GetMetric() {
		if label(m, "verb") == "WATCH" {
			total += value(m)
		}
	}
	return int(total)
}

// requests counts the API server's requests so far by verb and resource.
func (h *harness) requests() map[string]float64 {
	out := map[string]float64{}
	for _, m := range h.apiMetrics()["apiserver_request_total"].GetMetric() {
		out[label(m, "verb")+" "+label(m, "resource")] += value(m)
	}
	return out
}

// apiMetrics scrapes the API server's metrics; nil when it cannot.
func (h *harness) apiMetrics() map[string]*dto.MetricFamily {
	b, err := h.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return nil
	}
	return parseMetrics(bytes.NewReader(b))
}

// since lists the request counts that grew from before to after, leaving
// out the harness's own metrics reads.
func since(before, after map[string]float64) string {
	var parts []string
	for k, v := range after {
		if d := v - before[k]; d > 0 && k != "GET " {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, d))
		}
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// metric reads the first sample of an agent's metric; -1 when absent.
func metric(addr, name string) float64 {
	if ms := agentMetrics(addr)[name].GetMetric(); len(ms) > 0 {
		return value(ms[0])
	}
	return -1
}

// agentMetrics scrapes an agent's metrics; nil when it cannot.
func agentMetrics(addr string) map[string]*dto.MetricFamily {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// parseMetrics reads Prometheus's text format; what does not parse is left out.
func parseMetrics(r io.Reader) map[string]*dto.MetricFamily {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, _ := p.TextToMetricFamilies(r)
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}
