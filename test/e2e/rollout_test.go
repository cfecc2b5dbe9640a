package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-mesh/tandem/examples/greeter"
	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// cluster is a local control plane (with the Gateway API CRDs) with
// discovery, and greeter servers on the backend addresses, inside a network
// namespace of the test's own.
type cluster struct {
	cfg    *rest.Config
	kube   kubernetes.Interface
	disc   *discoverytest.Instance
	socket string
	token  string
}

// startCluster re-executes the test in a network namespace (false: this
// is the parent, which has nothing more to do) and starts the cluster
// there. grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG when the process starts,
// so the socket path is fixed before the re-execution and passed down.
func startCluster(t *testing.T) (*cluster, bool) {
	socket := os.Getenv(socketEnv)
	if !netns.InChild() {
		socket = filepath.Join(t.TempDir(), "xds.sock")
	}
	boot, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: "greeter-client.demo", Cluster: ns, XDSSocket: socket})
	if err != nil {
		t.Fatal(err)
	}
	if !netnstest.RunTest(t, "GRPC_XDS_BOOTSTRAP_CONFIG="+boot, socketEnv+"="+socket) {
		return nil, false
	}
	if err := netns.Setup(parseAddrs(t, backends), nil); err != nil {
		t.Fatal(err)
	}
	for _, ip := range backends {
		startGreeter(t, ip)
	}
	_, cfg := testenv.Start(t, testenv.Options{GatewayAPI: true, APIServerFlags: map[string]string{
		"advertise-address":        "127.0.0.1",
		"endpoint-reconciler-type": "none",
	}})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := &cluster{cfg: cfg, kube: kube, disc: discoverytest.New(t, cfg), socket: socket}
	c.token = discoverytest.Token(t, kube, ns, "greeter-client", discovery.Audience)
	return c, true
}

func (c *cluster) dial(t *testing.T, service string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("xds:///"+service+"."+ns+".svc.cluster.local:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// caller calls one greeter after another until stopped, counting answers
// per backend and failures.
type caller struct {
	mu       sync.Mutex
	counts   map[string]int
	failures int
	lastErr  error
	stop     chan struct{}
	done     chan struct{}
}

func startCaller(conn *grpc.ClientConn) *caller {
	c := &caller{counts: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			counts, err := greeter.Call(ctx, conn, 1, "e2e", nil)
			cancel()
			c.mu.Lock()
			if err != nil {
				c.failures++
				c.lastErr = err
			}
			for b, n := range counts {
				c.counts[b] += n
			}
			c.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return c
}

// take returns what was counted since the last take.
func (c *caller) take() (counts map[string]int, failures int, lastErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts, failures, lastErr = c.counts, c.failures, c.lastErr
	c.counts, c.failures, c.lastErr = map[string]int{}, 0, nil
	return counts, failures, lastErr
}

func (c *caller) halt() { close(c.stop); <-c.done }

// TestProxylessRolloutKeepsServing: at the end of a rollout every endpoint
// of a Service can be serving but terminating (the old pods draining, the
// new ones not ready yet). kube-proxy then uses the terminating ones
// (KEP-1669); a client of Tandem must not fail a single call either.
func TestProxylessRolloutKeepsServing(t *testing.T) {
	c, ok := startCluster(t)
	if !ok {
		return
	}
	ctx := context.Background()
	const svc = "rollout"
	if _, err := c.kube.CoreV1().Services(ns).Create(ctx, kubeobj.Service(ns, svc, "grpc", port, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice, err := c.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, kubeobj.EndpointSlice(ns, svc+"-abc", svc, "grpc", port, backends[:3]...), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.disc.Start()
	startAgent(t, c.cfg, c.socket, c.disc, c.token)
	conn := c.dial(t, svc)
	warmUp(t, conn, backends[:3])

	calls := startCaller(conn)
	defer calls.halt()
	time.Sleep(500 * time.Millisecond)
	if counts, failures, err := calls.take(); failures > 0 || len(counts) == 0 {
		t.Fatalf("before the rollout: %d failed calls (%v), answers %v", failures, err, counts)
	}

	// Every old pod terminating, still serving; no new pod ready yet.
	for i := range slice.Endpoints {
		slice.Endpoints[i].Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)}
	}
	if slice, err = c.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	counts, failures, lastErr := calls.take()
	t.Logf("while every endpoint was serving but terminating: %v answered, %d failed", counts, failures)
	if failures > 0 || len(counts) == 0 {
		t.Errorf("while every endpoint was serving but terminating: %d calls failed (last: %v), answers %v; want none failed", failures, lastErr, counts)
	}

	// The new pods are ready and the old ones gone.
	kubeobj.SetAddresses(slice, backends[3:]...)
	if _, err = c.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	counts, failures, lastErr = calls.take()
	t.Logf("after the rollout: %v answered, %d failed", counts, failures)
	if failures > 0 || counts[backends[3]] == 0 || counts[backends[4]] == 0 {
		t.Errorf("after the rollout: %d calls failed (last: %v), answers %v; want both new pods answering, nothing failed", failures, lastErr, counts)
	}
}
