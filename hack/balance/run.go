package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/kubeproxy"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
	"github.com/tandem-mesh/tandem/internal/xds/server"
)

// Names in cluster.yaml.
const (
	namespace  = "balance"
	clientNode = "greeter-client.balance"
	slowPod    = "greeter-slow" // answers every call --delay late
	twinPod    = "greeter-twin" // fast, in the slow pod's place for the floor
)

// serviceCIDR holds cluster.yaml's cluster IPs, routed to loopback so the
// client's connections to them reach the cluster-IP rules.
var serviceCIDR = netip.MustParsePrefix("198.51.100.0/24")

// mode is one way the client reaches the servers.
type mode struct {
	key     string // its key in the JSON
	label   string // its row in the table
	service string // the Service of cluster.yaml it calls
	dial    dial
	// slowFails: the slow pod's calls fail (a timeout shorter than its
	// delay), so failures are counted rather than ending the run, and the
	// warm-up does not wait for that pod to answer.
	slowFails bool
}

// dial is how the client reaches a Service.
type dial int

const (
	// proxyless dials xds:///<service host>:<port>; gRPC balances.
	proxyless dial = iota
	// clusterIP dials the Service's cluster IP: one connection, to the one
	// pod kube-proxy's rules picked for it.
	clusterIP
	// sidecar dials the cluster IP too, but the connection is captured
	// into Envoy, which balances each call over every pod.
	sidecar
)

// The modes in the order they run in each round and appear in the table.
var modes = []mode{
	{key: "floor", label: "no slow server (floor)", service: "greeter-floor"},
	{key: "clusterip", label: "cluster IP, one connection", service: "greeter", dial: clusterIP},
	{key: "round-robin", label: "Tandem proxyless, round robin", service: "greeter-round-robin"},
	{key: "default", label: "Tandem proxyless, default", service: "greeter"},
}

var envoyMode = mode{key: "envoy", label: "Tandem Envoy sidecar, default", service: "greeter", dial: sidecar}

// experiments are the other settings a TrafficPolicy gives the proxyless
// data plane, on the same pods. Slow start has no row: gRPC has none, and
// the proxyless translation leaves it out.
var experiments = []mode{
	{key: "choice-count-3", label: "leastRequest.choiceCount: 3", service: "greeter-choice-3"},
	{key: "choice-count-5", label: "leastRequest.choiceCount: 5", service: "greeter-choice-5"},
	{key: "choice-count-10", label: "leastRequest.choiceCount: 10", service: "greeter-choice-10"},
	{key: "outlier-detection", label: "outlierDetection", service: "greeter-outlier"},
	{key: "outlier-detection-timeout", label: "outlierDetection, timeout: 10ms", service: "greeter-outlier-timeout", slowFails: true},
}

// service is what the client needs of a Service: where to dial it and
// which pods serve it, the slow one (or its twin) first.
type service struct {
	clusterIP netip.AddrPort
	pods      []string
}

// pod is one greeter server.
type pod struct {
	name string
	addr netip.AddrPort
}

// cluster is cluster.yaml read: the Translate inputs, its Services and pods.
type cluster struct {
	in       xds.Inputs
	services map[string]service
	pods     []pod
}

func readCluster() (*cluster, error) {
	in, skipped, err := objects.Read(bytes.NewReader(clusterYAML), "cluster.yaml")
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		return nil, fmt.Errorf("%s", skipped[0])
	}
	c := &cluster{in: in, services: map[string]service{}}
	seen := map[string]netip.AddrPort{}
	for _, s := range in.Services {
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || len(s.Spec.Ports) != 1 {
			return nil, fmt.Errorf("cluster.yaml: Service %s needs a cluster IP and one port", s.Name)
		}
		svc := service{clusterIP: netip.AddrPortFrom(ip, uint16(s.Spec.Ports[0].Port))}
		for _, es := range in.EndpointSlices {
			if es.Labels["kubernetes.io/service-name"] != s.Name {
				continue
			}
			for _, ep := range es.Endpoints {
				if len(ep.Addresses) == 0 {
					return nil, fmt.Errorf("cluster.yaml: EndpointSlice %s: an endpoint has no address", es.Name)
				}
				addr, err := netip.ParseAddr(ep.Addresses[0])
				if err != nil || ep.TargetRef == nil || len(es.Ports) != 1 || es.Ports[0].Port == nil {
					return nil, fmt.Errorf("cluster.yaml: EndpointSlice %s: every endpoint needs an address and a Pod, the slice one port", es.Name)
				}
				p := pod{name: ep.TargetRef.Name, addr: netip.AddrPortFrom(addr, uint16(*es.Ports[0].Port))}
				if prev, ok := seen[p.name]; ok && prev != p.addr {
					return nil, fmt.Errorf("cluster.yaml: pod %s has two addresses, %s and %s", p.name, prev, p.addr)
				}
				if _, ok := seen[p.name]; !ok {
					seen[p.name] = p.addr
					c.pods = append(c.pods, p)
				}
				svc.pods = append(svc.pods, p.name)
			}
		}
		slices.SortFunc(svc.pods, slowFirst)
		c.services[s.Name] = svc
	}
	for _, m := range slices.Concat(modes, []mode{envoyMode}, experiments) {
		if len(c.services[m.service].pods) == 0 {
			return nil, fmt.Errorf("cluster.yaml: mode %s calls Service %s, which has no endpoints there", m.key, m.service)
		}
	}
	return c, nil
}

// slowFirst orders pod names with the slow pod (or its twin) first.
func slowFirst(a, b string) int {
	rank := func(p string) int {
		if p == slowPod || p == twinPod {
			return 0
		}
		return 1
	}
	return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
}

// run measures every mode o.runs times, interleaved so that a change in the
// machine's load touches all modes alike, then prints the table.
func run(ctx context.Context, o options, work string) error {
	if work == "" {
		return fmt.Errorf("$%s is not set: run balance itself, not its re-run in the network namespace", workEnv)
	}
	c, err := readCluster()
	if err != nil {
		return err
	}
	addrs := make([]netip.Addr, len(c.pods))
	for i, p := range c.pods {
		addrs[i] = p.addr.Addr()
	}
	if err := netns.Setup(addrs, []netip.Prefix{serviceCIDR}); err != nil {
		return err
	}
	procs := &childproc.Group{}
	defer procs.StopAll()
	if err := startServers(ctx, procs, o, c.pods, work); err != nil {
		return err
	}
	stopXDS, err := serveProxyless(c.in, work)
	if err != nil {
		return err
	}
	defer stopXDS()
	// kube-proxy's rules for the default Service: one pod per connection.
	direct := c.services["greeter"]
	backends := make([]netip.Addr, len(direct.pods))
	for i, name := range direct.pods {
		backends[i] = c.pod(name).addr.Addr()
	}
	remove, err := kubeproxy.InstallClusterIP(direct.clusterIP.Addr(), direct.clusterIP.Port(), backends, c.pod(direct.pods[0]).addr.Port())
	if err != nil {
		return err
	}
	removeClusterIP := sync.OnceValue(remove)
	defer removeClusterIP()

	measured := modes
	if o.experiments {
		measured = slices.Concat(modes, experiments)
	}
	fmt.Fprintf(os.Stderr, "Measuring %d modes, %d runs of %d calls each, %d in flight (pod %s answers %v late)\n",
		len(measured), o.runs, o.calls, o.concurrency, slowPod, o.delay)
	results := map[string]*result{}
	for r := range o.runs {
		start := time.Now()
		var took []string
		for _, m := range measured {
			t := time.Now()
			if err := measure(ctx, o, m, c.services[m.service], results); err != nil {
				return err
			}
			took = append(took, fmt.Sprintf("%s %.1fs", m.key, time.Since(t).Seconds()))
		}
		fmt.Fprintf(os.Stderr, "  run %d of %d done in %.0fs (%s)\n", r+1, o.runs, time.Since(start).Seconds(), strings.Join(took, ", "))
	}
	shown := slices.Clone(modes)
	if o.envoy == "" {
		fmt.Fprintln(os.Stderr, "  no envoy binary on PATH: the Envoy sidecar is not measured")
	} else {
		// A pod's network namespace has no kube-proxy rules: Envoy alone
		// takes its connections to cluster IPs.
		if err := removeClusterIP(); err != nil {
			return err
		}
		ran, err := measureEnvoy(ctx, o, c, procs, work, results)
		if err != nil {
			return err
		}
		if ran {
			shown = append(shown, envoyMode)
		}
	}
	var tried []mode
	if o.experiments {
		tried = experiments
	}
	printTable(os.Stdout, o, shown, tried, results)
	return writeJSON(o.jsonPath, slices.Concat(shown, tried), results)
}

func (c *cluster) pod(name string) pod {
	for _, p := range c.pods {
		if p.name == name {
			return p
		}
	}
	return pod{}
}

// startServers runs one greeter-server per pod, each answering with its pod
// name, the slow one late, and waits until all of them accept connections.
func startServers(ctx context.Context, procs *childproc.Group, o options, pods []pod, work string) error {
	for _, p := range pods {
		args := []string{"--listen=" + p.addr.String(), "--hostname=" + p.name}
		if p.name == slowPod {
			args = append(args, "--delay="+o.delay.String())
		}
		proc, err := procs.Start(p.name, work, exec.CommandContext(ctx, filepath.Join(o.binDir, "greeter-server"), args...))
		if err != nil {
			return err
		}
		if err := waitListening(p.addr, proc); err != nil {
			return err
		}
	}
	return nil
}

func waitListening(addr netip.AddrPort, proc *childproc.Process) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, err := proc.Exited(); done {
			return fmt.Errorf("greeter-server %s exited (%v):\n%s", proc.Name, err, proc.Tail(10))
		}
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("greeter-server %s does not accept connections on %s after 10s: %w", proc.Name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveProxyless serves gRPC's xDS for the cluster on the socket the
// client's bootstrap names: the translation and the xDS server `agent run
// --proxyless` uses, given the objects that it would otherwise watch.
func serveProxyless(in xds.Inputs, work string) (stop func(), err error) {
	res, errs := xds.Translate(in, xds.Proxyless)
	if len(errs) > 0 {
		return nil, fmt.Errorf("translating cluster.yaml: %v", errs)
	}
	srv := server.New(server.Options{Logger: discardLogger(), Proxyless: true})
	srv.Publish(res)
	lis, err := server.Listen(filepath.Join(work, "xds.sock"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, lis)
	}()
	return func() { cancel(); <-done }, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// measure runs mode m once: a new client, warmed up, then o.calls calls.
func measure(ctx context.Context, o options, m mode, svc service, results map[string]*result) error {
	target, backends := "xds:///"+xds.ServiceHost(namespace, m.service, int32(svc.clusterIP.Port())), len(svc.pods)
	switch m.dial {
	case clusterIP:
		target, backends = svc.clusterIP.String(), 1
	case sidecar:
		target = svc.clusterIP.String()
	}
	if m.slowFails {
		backends--
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("%s: %w", m.key, err)
	}
	defer conn.Close()
	warmFailed, err := warmUp(ctx, conn, backends, o, m.slowFails)
	if err != nil {
		return fmt.Errorf("%s: warming up %s: %w", m.key, target, err)
	}
	lat, counts, err := load(ctx, conn, o.calls, o.concurrency)
	if ctx.Err() != nil || (err != nil && !m.slowFails) {
		return fmt.Errorf("%s: calling %s: %w", m.key, target, err)
	}
	r := results[m.key]
	if r == nil {
		r = &result{pods: svc.pods, counts: map[string]int{}}
		results[m.key] = r
	}
	r.add(lat, counts)
	r.failed += warmFailed
	return nil
}

// warmUp calls until as many backends as the client can reach have
// answered (every connection is up), then o.warmup calls at the measured
// concurrency, so balancers start from a steady state. It returns how many
// calls failed, which only a mode with mayFail survives.
func warmUp(ctx context.Context, conn *grpc.ClientConn, backends int, o options, mayFail bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	failed := 0
	check := func(counts map[string]int, err error) error {
		if err != nil && (!mayFail || ctx.Err() != nil) {
			return fmt.Errorf("%d of %d backends answered: %w", len(seen), backends, err)
		}
		for b, n := range counts {
			if b == failedCall {
				failed += n
			} else {
				seen[b] = true
			}
		}
		return nil
	}
	for len(seen) < backends {
		_, counts, err := load(ctx, conn, 10, 1)
		if err := check(counts, err); err != nil {
			return failed, err
		}
	}
	if o.warmup > 0 {
		_, counts, err := load(ctx, conn, o.warmup, o.concurrency)
		if err := check(counts, err); err != nil {
			return failed, err
		}
	}
	return failed, nil
}
