// Package e2e runs Tandem's parts together against a real API server.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and its balancers
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/examples/greeter"
	"github.com/tandem-mesh/tandem/internal/agent"
	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/testutil/xdstest"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/server"
)

// socketEnv passes the xDS socket path into the namespace.
const socketEnv = "TANDEM_E2E_XDS_SOCKET"

const (
	ns      = "demo"
	svcName = "greeter"
	port    = 50051
	target  = "xds:///greeter.demo.svc.cluster.local:50051"
)

// Five greeter servers on documentation addresses; the first three back
// the Service at the start.
var backends = []string{"198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14", "198.51.100.15"}

// Two more behind an IPv6-only Service.
var backends6 = []string{"2001:db8::11", "2001:db8::12"}

// TestProxylessGreeter runs the agent against envtest and a real grpc-go
// xDS client calling real greeter servers, all inside a network namespace.
func TestProxylessGreeter(t *testing.T) {
	// grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG when the process starts, so
	// the socket path and bootstrap are fixed here, before the test
	// re-executes itself in the namespace, and passed down.
	socket := os.Getenv(socketEnv)
	if !netns.InChild() {
		socket = filepath.Join(t.TempDir(), "xds.sock")
	}
	boot, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: "greeter-client.demo", Cluster: ns, XDSSocket: socket})
	if err != nil {
		t.Fatal(err)
	}
	if !netnstest.RunTest(t, "GRPC_XDS_BOOTSTRAP_CONFIG="+boot, socketEnv+"="+socket) {
		return
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != boot {
		t.Fatalf("GRPC_XDS_BOOTSTRAP_CONFIG = %q, want the bootstrap for %s", os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG"), socket)
	}
	if err := netns.Setup(parseAddrs(t, append(backends, backends6...)), nil); err != nil {
		t.Fatal(err)
	}
	for _, ip := range append(backends, backends6...) {
		startGreeter(t, ip)
	}
	// The namespace has only loopback: the API server cannot find an
	// address to advertise on its own and refuses loopback endpoints for
	// the kubernetes Service, which no test here needs.
	_, cfg := testenv.Start(t, testenv.Options{APIServerFlags: map[string]string{
		"advertise-address":        "127.0.0.1",
		"endpoint-reconciler-type": "none",
	}})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services(ns).Create(ctx, kubeobj.Service(ns, svcName, "grpc", port, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slice, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx,
		kubeobj.EndpointSlice(ns, "greeter-abc", svcName, "grpc", port, backends[:3]...), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The agent gets the cluster from discovery, as injected agents do,
	// and subscribes to the Services the client asks listeners for.
	disc := discoverytest.New(t, cfg)
	disc.Start()
	e := startAgent(t, cfg, socket, disc, discoverytest.Token(t, kube, ns, "greeter-client", discovery.Audience))
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cluster := xds.ClusterName(ns, svcName, port)

	t.Run("BalancesEvenly", func(t *testing.T) {
		warmUp(t, conn, backends[:3])
		counts := call(t, conn, 3000, nil)
		t.Logf("3000 requests: %v", counts)
		for _, b := range backends[:3] {
			share := float64(counts[b]) / 3000
			if share < 0.30 || share > 0.363 {
				t.Errorf("backend %s got %.1f%% of the requests, want 33%% ± 3%%", b, 100*share)
			}
		}
		if len(counts) != 3 {
			t.Errorf("requests reached %d backends, want the 3 of the EndpointSlice: %v", len(counts), counts)
		}
	})

	t.Run("InvalidResourceNeverPublished", func(t *testing.T) {
		before := e.srv.Resources(server.Cluster)[cluster]
		if before == nil {
			t.Fatalf("cluster %s not served", cluster)
		}
		rejected := e.srv.Stats().Rejected[server.Cluster]
		watcher := xdstest.NewSotW(t, e.dial(t))
		watcher.Subscribe(resource.ClusterType, cluster)
		watcher.ACK(watcher.Recv(resource.ClusterType))

		// The next rebuild turns the greeter cluster invalid (a negative
		// connect timeout); a change of the Service's ports triggers it.
		e.corrupt.Store(true)
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "grpc-admin", Port: port + 1, Protocol: corev1.ProtocolTCP})
		if svc, err = kube.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 10*time.Second, "the invalid cluster to be rejected", func() bool {
			return e.srv.Stats().Rejected[server.Cluster] > rejected
		})
		watcher.Quiet(500 * time.Millisecond)
		if after := e.srv.Resources(server.Cluster)[cluster]; !proto.Equal(before, after) {
			t.Fatal("the served cluster changed after a rebuild produced an invalid version of it")
		}
		counts := call(t, conn, 300, nil)
		if len(counts) != 3 {
			t.Fatalf("after the rejected rebuild requests reached %v, want all 3 backends still", counts)
		}
		e.corrupt.Store(false)
	})

	t.Run("ScaleUpReachesNewEndpointsWithin1s", func(t *testing.T) {
		kubeobj.SetAddresses(slice, backends...)
		start := time.Now()
		if slice, err = kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for !seen[backends[3]] || !seen[backends[4]] {
			if time.Since(start) > time.Second {
				t.Fatalf("new endpoints not reached within 1s of the EndpointSlice update; reached %v", seen)
			}
			for b := range call(t, conn, 1, nil) {
				seen[b] = true
			}
		}
		t.Logf("both new endpoints answered %v after the EndpointSlice update", time.Since(start).Round(time.Millisecond))
	})

	t.Run("RemovedEndpointGetsNoRequests", func(t *testing.T) {
		removed := backends[1]
		kubeobj.SetAddresses(slice, backends[0], backends[2], backends[3], backends[4])
		if slice, err = kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 10*time.Second, "the client to stop using the removed endpoint", func() bool {
			return call(t, conn, 100, nil)[removed] == 0
		})
		counts := call(t, conn, 1000, nil)
		if counts[removed] != 0 {
			t.Fatalf("removed endpoint %s still got %d of 1000 requests", removed, counts[removed])
		}
		if len(counts) != 4 {
			t.Fatalf("requests reached %v, want the 4 remaining backends", counts)
		}
	})

	t.Run("IPv6Endpoints", func(t *testing.T) {
		if _, err := kube.CoreV1().Services(ns).Create(ctx, kubeobj.Service(ns, "greeter-v6", "grpc", port, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx,
			kubeobj.EndpointSlice(ns, "greeter-v6-abc", "greeter-v6", "grpc", port, backends6...), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		v6 := xds.ServiceHost(ns, "greeter-v6", port)
		if _, ok := e.srv.Resources(server.Listener)[v6]; ok {
			t.Fatalf("listener %s served before the client dials it: the agent subscribes to what its client asks for only", v6)
		}
		conn6, err := grpc.NewClient("xds:///"+v6, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn6.Close()
		// The listener appears with the next rebuild; until then the
		// client reports the resource missing, so retry the warm-up.
		seen := map[string]bool{}
		poll.Until(t, 10*time.Second, "both IPv6 backends to answer", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			counts, _ := greeter.Call(ctx, conn6, 10, "e2e", nil)
			for b := range counts {
				seen[b] = true
			}
			return seen[backends6[0]] && seen[backends6[1]]
		})
		if len(seen) != 2 {
			t.Fatalf("IPv6 Service reached %v, want only its two backends", seen)
		}
		if !e.agent.FromDiscovery() {
			t.Fatal("the second Service came from the API server, not from discovery")
		}
	})

	t.Run("DiscoveryOutage", func(t *testing.T) {
		disc.Stop()
		// The last configuration keeps serving.
		if counts := call(t, conn, 100, nil); len(counts) != 4 {
			t.Fatalf("with discovery down, requests reached %v, want the 4 backends", counts)
		}
		poll.Until(t, 10*time.Second, "the agent to watch the API server", func() bool { return !e.agent.FromDiscovery() })
		// Changes still reach the client, through the API server now.
		kubeobj.SetAddresses(slice, backends[0], backends[2], backends[3])
		if slice, err = kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 10*time.Second, "backend 198.51.100.15 to get nothing", func() bool { return call(t, conn, 100, nil)[backends[4]] == 0 })
		disc.Start()
		poll.Until(t, 15*time.Second, "the agent back on discovery", e.agent.FromDiscovery)
		kubeobj.SetAddresses(slice, backends[0], backends[2], backends[3], backends[4])
		if slice, err = kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		warmUp(t, conn, []string{backends[0], backends[2], backends[3], backends[4]})
	})

	t.Run("RingHashPinsHeaderValues", func(t *testing.T) {
		policy := &v1alpha1.TrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeter-by-user"},
			Spec: v1alpha1.TrafficPolicySpec{
				TargetRef: v1alpha1.TargetRef{Name: svcName},
				LoadBalancer: &v1alpha1.LoadBalancer{
					Policy: v1alpha1.RingHash,
					HashOn: &v1alpha1.HashOn{Header: "x-user-id"},
				},
			},
		}
		res, _ := xds.Translate(xds.Inputs{
			Services:       []*corev1.Service{svc},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice},
			Policies:       []*v1alpha1.TrafficPolicy{policy},
		}, xds.Proxyless)
		if !anyRingHash(res.Clusters) {
			t.Fatal("xds.Translate does not turn a TrafficPolicy with loadBalancer.policy RingHash " +
				"and hashOn.header into a RING_HASH cluster with a route hash_policy on that header")
		}
		create(t, cfg, policy)
		poll.Until(t, 10*time.Second, "the served cluster to use ring hash", func() bool {
			return anyRingHash([]types.Resource{e.srv.Resources(server.Cluster)[cluster]})
		})
		used := map[string]bool{}
		// The client applies the new cluster and route shortly after the
		// server has them; a value is pinned once its requests agree.
		for i := range 20 {
			user := fmt.Sprintf("user-%d", i)
			md := metadata.Pairs("x-user-id", user)
			var counts map[string]int
			poll.Until(t, 5*time.Second, "requests of "+user+" to stay on one backend", func() bool {
				counts = call(t, conn, 30, md)
				return len(counts) == 1
			})
			for b := range counts {
				used[b] = true
			}
		}
		if len(used) < 2 {
			t.Fatalf("20 header values all hashed to %v; ring hash is not spreading them", used)
		}
	})
}

type env struct {
	agent   *agent.Agent
	srv     *server.Server
	socket  string
	corrupt atomic.Bool // the next rebuilds make the greeter cluster invalid
}

func (e *env) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startAgent runs the proxyless agent with its xDS server on a Unix socket,
// following disc with token.
func startAgent(t *testing.T, cfg *rest.Config, socket string, disc *discoverytest.Instance, token string) *env {
	t.Helper()
	return startAgentAt(t, cfg, socket, disc, token, xds.Locality{})
}

// startAgentAt is startAgent for an agent whose pod runs at local.
func startAgentAt(t *testing.T, cfg *rest.Config, socket string, disc *discoverytest.Instance, token string, local xds.Locality) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	e := &env{socket: socket}
	e.srv = server.New(server.Options{Logger: log, Proxyless: true,
		OnListenerNames: func(names []string) { e.agent.SubscribeListeners(names) }})
	lis, err := server.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	src, err := kubewatch.NewSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	invalid := xds.ClusterName(ns, svcName, port)
	a, err := agent.New(agent.Options{
		Sources: src,
		Discovery: &agent.DiscoveryOptions{Address: disc.Addr, TLS: disc.ClientTLS(), TokenFile: token,
			NodeID: "greeter-client.demo", OnDemand: true, FallbackAfter: time.Second},
		Mode:      xds.Proxyless,
		Locality:  local,
		Publisher: e.srv,
		Logger:    log,
		Translate: func(in xds.Inputs, m xds.Mode) (*xds.Resources, []error) {
			res, errs := xds.Translate(in, m)
			if e.corrupt.Load() {
				for i, r := range res.Clusters {
					if c, ok := r.(*clusterv3.Cluster); ok && c.Name == invalid {
						bad := proto.Clone(c).(*clusterv3.Cluster)
						bad.ConnectTimeout = durationpb.New(-time.Second)
						res.Clusters[i] = bad
					}
				}
			}
			return res, errs
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, lis) }()
	go func() { ran <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("agent: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("xDS server: %v", err)
		}
	})
	poll.Until(t, 30*time.Second, "the agent to sync", a.Synced)
	return e
}

// startGreeter serves a greeter answering with its address on ip:port.
func startGreeter(t *testing.T, ip string) {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	greeter.Register(g, &greeter.Server{Hostname: ip})
	go g.Serve(lis)
	t.Cleanup(g.Stop)
}

// call sends n requests, with md when set, and counts answers per backend.
func call(t *testing.T, conn *grpc.ClientConn, n int, md metadata.MD) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	counts, err := greeter.Call(ctx, conn, n, "e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

// warmUp calls until every backend has answered, so all connections are up
// before anything is measured.
func warmUp(t *testing.T, conn *grpc.ClientConn, want []string) {
	t.Helper()
	seen := map[string]bool{}
	poll.Until(t, 30*time.Second, "every backend to answer: "+strings.Join(want, ", "), func() bool {
		for b := range call(t, conn, 10, nil) {
			seen[b] = true
		}
		for _, b := range want {
			if !seen[b] {
				return false
			}
		}
		return true
	})
}

func anyRingHash(rs []types.Resource) bool {
	for _, r := range rs {
		c, ok := r.(*clusterv3.Cluster)
		if !ok {
			continue
		}
		if c.GetLbPolicy() == clusterv3.Cluster_RING_HASH {
			return true
		}
		for _, p := range c.GetLoadBalancingPolicy().GetPolicies() {
			if strings.Contains(p.GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl(), "ring_hash") {
				return true
			}
		}
	}
	return false
}

func create(t *testing.T, cfg *rest.Config, obj client.Object) {
	t.Helper()
	c := testenv.Client(t, cfg)
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func parseAddrs(t *testing.T, addrs []string) []netip.Addr {
	t.Helper()
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}
