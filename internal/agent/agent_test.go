package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// recorder is a Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	full []*xds.Resources
	eds  [][]*endpointv3.ClusterLoadAssignment
}

func (r *recorder) Publish(res *xds.Resources) {
	r.mu.Lock()
	r.full = append(r.full, res)
	r.mu.Unlock()
}

func (r *recorder) PublishEndpoints(c []*endpointv3.ClusterLoadAssignment) {
	r.mu.Lock()
	r.eds = append(r.eds, c)
	r.mu.Unlock()
}

func (r *recorder) counts() (full, eds int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.full), len(r.eds)
}

func (r *recorder) lastFull() *xds.Resources {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.full) == 0 {
		return nil
	}
	return r.full[len(r.full)-1]
}

func (r *recorder) lastEDS() []*endpointv3.ClusterLoadAssignment {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.eds) == 0 {
		return nil
	}
	return r.eds[len(r.eds)-1]
}

func names(rs []types.Resource) map[string]types.Resource {
	out := map[string]types.Resource{}
	for _, r := range rs {
		out[cachev3.GetResourceName(r)] = r
	}
	return out
}

func endpointCount(c *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range c.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

type harness struct {
	t     *testing.T
	agent *Agent
	rec   *recorder
	reg   *prometheus.Registry
}

// startAgent runs an agent against the API server at cfg until the test ends.
func startAgent(t *testing.T, cfg *rest.Config, o Options) *harness {
	t.Helper()
	src, err := kubewatch.NewSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, rec: &recorder{}, reg: prometheus.NewRegistry()}
	o.Sources, o.Publisher, o.Registerer = src, h.rec, h.reg
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.agent, err = New(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	poll.Until(t, 30*time.Second, "informer sync", h.agent.Synced)
	return h
}

func kubeClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func create[T any](t *testing.T, f func(context.Context, T, metav1.CreateOptions) (T, error), obj T) T {
	t.Helper()
	out, err := f(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return out
}

func namespace(t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	create(t, kube.CoreV1().Namespaces().Create, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

func TestAgentAgainstAPIServer(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	kube := kubeClient(t, cfg)
	ctx := context.Background()

	t.Run("IncrementalAndFullUpdates", func(t *testing.T) {
		namespace(t, kube, "shop")
		svc := create(t, kube.CoreV1().Services("shop").Create, kubeobj.Service("shop", "cart", "grpc", 50051, ""))
		slice := create(t, kube.DiscoveryV1().EndpointSlices("shop").Create,
			kubeobj.EndpointSlice("shop", "cart-1", "cart", "grpc", 50051, "198.51.100.1", "198.51.100.2"))
		cluster := xds.ClusterName("shop", "cart", 50051)

		h := startAgent(t, cfg, Options{Namespaces: []string{"shop"}, Debounce: 300 * time.Millisecond})
		first := h.rec.lastFull()
		if first == nil {
			t.Fatal("no configuration published at sync")
		}
		if _, ok := names(first.Clusters)[cluster]; !ok {
			t.Fatalf("first configuration lacks cluster %s", cluster)
		}
		c, ok := names(first.Endpoints)[cluster].(*endpointv3.ClusterLoadAssignment)
		if !ok || endpointCount(c) != 2 {
			t.Fatalf("first configuration: %s has %d endpoints, want 2", cluster, endpointCount(c))
		}
		poll.Never(t, 600*time.Millisecond, "a second rebuild without any change", func() bool { f, _ := h.rec.counts(); return f > 1 })
		full0, eds0 := h.rec.counts()

		// A slice change goes the incremental way: only this Service's
		// assignments, no full rebuild.
		kubeobj.SetAddresses(slice, "198.51.100.1", "198.51.100.2", "198.51.100.3")
		slice, err := kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "an incremental endpoint update", func() bool { _, e := h.rec.counts(); return e > eds0 })
		got := h.rec.lastEDS()
		if len(got) != 1 || got[0].ClusterName != cluster || endpointCount(got[0]) != 3 {
			t.Fatalf("incremental update = %d assignments (first %q with %d endpoints), want just %s with 3",
				len(got), got[0].GetClusterName(), endpointCount(got[0]), cluster)
		}
		poll.Never(t, 600*time.Millisecond, "a full rebuild after an EndpointSlice change", func() bool { f, _ := h.rec.counts(); return f > full0 })

		// A slice of a Service that does not exist publishes nothing.
		_, eds1 := h.rec.counts()
		create(t, kube.DiscoveryV1().EndpointSlices("shop").Create,
			kubeobj.EndpointSlice("shop", "ghost-1", "ghost", "grpc", 50051, "198.51.100.9"))
		poll.Never(t, 500*time.Millisecond, "a publication for a slice without a Service", func() bool {
			f, e := h.rec.counts()
			return f > full0 || e > eds1
		})

		// Three quick Service changes: one debounced rebuild.
		for _, v := range []string{"1", "2", "3"} {
			svc.Labels["rev"] = v
			if svc, err = kube.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		poll.Until(t, 5*time.Second, "a rebuild after Service changes", func() bool { f, _ := h.rec.counts(); return f > full0 })
		time.Sleep(700 * time.Millisecond)
		if f, _ := h.rec.counts(); f != full0+1 {
			t.Fatalf("%d rebuilds after three quick Service changes, want 1", f-full0)
		}

		// Metadata a translation does not read triggers nothing.
		full1, eds2 := h.rec.counts()
		svc.Annotations = map[string]string{"note": "irrelevant"}
		if _, err = kube.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		slice.Annotations = map[string]string{"note": "irrelevant"}
		if _, err = kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Never(t, 700*time.Millisecond, "a publication after annotation-only changes", func() bool {
			f, e := h.rec.counts()
			return f > full1 || e > eds2
		})

		// Deleting the slice empties the Service's endpoints incrementally.
		if err := kube.DiscoveryV1().EndpointSlices("shop").Delete(ctx, "cart-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "an endpoint update after the slice deletion", func() bool { _, e := h.rec.counts(); return e > eds2 })
		if got := h.rec.lastEDS(); len(got) != 1 || endpointCount(got[0]) != 0 {
			t.Fatalf("after deleting the only slice: %d assignments, first with %d endpoints; want one with 0", len(got), endpointCount(got[0]))
		}
		if v := testutil.ToFloat64(h.agent.metrics.endpointUpdates); v < 2 {
			t.Errorf("tandem_agent_endpoint_updates_total = %v, want >= 2", v)
		}
	})

	// A headless Service's pod addresses are in its listener chains, so a
	// slice change must rebuild everything, not only push endpoints.
	t.Run("HeadlessSliceChangeRebuilds", func(t *testing.T) {
		namespace(t, kube, "db")
		create(t, kube.CoreV1().Services("db").Create, kubeobj.Service("db", "pg", "tcp-pg", 5432, corev1.ClusterIPNone))
		slice := create(t, kube.DiscoveryV1().EndpointSlices("db").Create,
			kubeobj.EndpointSlice("db", "pg-1", "pg", "tcp-pg", 5432, "198.51.100.21"))
		h := startAgent(t, cfg, Options{Namespaces: []string{"db"}, Debounce: 50 * time.Millisecond})
		if !strings.Contains(listenersJSON(t, h.rec.lastFull()), "198.51.100.21") {
			t.Fatal("the first configuration's listener does not list the headless pod 198.51.100.21")
		}
		full0, _ := h.rec.counts()
		kubeobj.SetAddresses(slice, "198.51.100.21", "198.51.100.22")
		if _, err := kube.DiscoveryV1().EndpointSlices("db").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "a full rebuild after the headless Service's slice changed", func() bool { f, _ := h.rec.counts(); return f > full0 })
		if !strings.Contains(listenersJSON(t, h.rec.lastFull()), "198.51.100.22") {
			t.Fatal("after the rebuild the listener does not list the new headless pod 198.51.100.22")
		}
	})

	t.Run("WatchNamespaces", func(t *testing.T) {
		namespace(t, kube, "watched")
		namespace(t, kube, "ignored")
		create(t, kube.CoreV1().Services("watched").Create, kubeobj.Service("watched", "api", "grpc", 8080, ""))
		create(t, kube.CoreV1().Services("ignored").Create, kubeobj.Service("ignored", "api", "grpc", 8080, ""))
		h := startAgent(t, cfg, Options{Namespaces: []string{"watched"}})
		got := names(h.rec.lastFull().Clusters)
		if _, ok := got[xds.ClusterName("watched", "api", 8080)]; !ok {
			t.Errorf("cluster of the watched namespace missing: %v", got)
		}
		if _, ok := got[xds.ClusterName("ignored", "api", 8080)]; ok {
			t.Errorf("cluster of an unwatched namespace published")
		}
		_, eds0 := h.rec.counts()
		create(t, kube.DiscoveryV1().EndpointSlices("ignored").Create,
			kubeobj.EndpointSlice("ignored", "api-1", "api", "grpc", 8080, "198.51.100.7"))
		poll.Never(t, 500*time.Millisecond, "an endpoint update from an unwatched namespace", func() bool { _, e := h.rec.counts(); return e > eds0 })
	})

	t.Run("CachesStrippedObjects", func(t *testing.T) {
		namespace(t, kube, "strip")
		svc := kubeobj.Service("strip", "web", "http", 80, "")
		svc.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"big":"blob"}`}
		create(t, kube.CoreV1().Services("strip").Create, svc)
		create(t, kube.DiscoveryV1().EndpointSlices("strip").Create,
			kubeobj.EndpointSlice("strip", "web-1", "web", "http", 80, "198.51.100.5"))
		h := startAgent(t, cfg, Options{Namespaces: []string{"strip"}})
		in := h.agent.current().Inputs()
		for _, s := range in.Services {
			if len(s.ManagedFields) != 0 || len(s.Annotations) != 0 {
				t.Errorf("cached Service keeps managed fields (%d) or annotations (%v)", len(s.ManagedFields), s.Annotations)
			}
			if len(s.Spec.Ports) != 1 || s.Spec.ClusterIP == "" {
				t.Errorf("cached Service lost its ports or cluster IP: %+v", s.Spec)
			}
		}
		for _, s := range in.EndpointSlices {
			if len(s.ManagedFields) != 0 || s.Endpoints[0].TargetRef.UID != "" {
				t.Errorf("cached EndpointSlice keeps managed fields or pod UIDs: %+v", s)
			}
			// internalTrafficPolicy Local reads the node.
			if n := s.Endpoints[0].NodeName; n == nil || *n != "node-1" {
				t.Errorf("cached EndpointSlice lost its endpoint's node: %+v", s)
			}
			if s.Labels[discoveryv1.LabelServiceName] != "web" || len(s.Labels) != 1 {
				t.Errorf("cached EndpointSlice labels = %v, want only the service name", s.Labels)
			}
		}
	})

	t.Run("ServesThroughAPIServerOutage", func(t *testing.T) {
		namespace(t, kube, "outage")
		create(t, kube.CoreV1().Services("outage").Create, kubeobj.Service("outage", "db", "grpc", 9000, ""))
		slice := create(t, kube.DiscoveryV1().EndpointSlices("outage").Create,
			kubeobj.EndpointSlice("outage", "db-1", "db", "grpc", 9000, "198.51.100.1"))

		proxy := newTCPProxy(t, cfg.Host)
		viaProxy := rest.CopyConfig(cfg)
		viaProxy.Host = "https://" + proxy.addr
		h := startAgent(t, viaProxy, Options{Namespaces: []string{"outage"}})
		_, eds0 := h.rec.counts()

		if n := proxy.cut(); n == 0 {
			t.Fatal("the agent had no connection through the proxy to lose")
		}
		kubeobj.SetAddresses(slice, "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4")
		if _, err := kube.DiscoveryV1().EndpointSlices("outage").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Never(t, 2*time.Second, "an update while the API server is unreachable", func() bool { _, e := h.rec.counts(); return e > eds0 })
		if !h.agent.Synced() {
			t.Fatal("agent lost its synced state during the outage")
		}

		proxy.restore()
		poll.Until(t, 60*time.Second, "the watch to resume and deliver the change", func() bool { _, e := h.rec.counts(); return e > eds0 })
		if got := h.rec.lastEDS(); len(got) != 1 || endpointCount(got[0]) != 4 {
			t.Fatalf("after the outage: %d assignments; want one with 4 endpoints", len(got))
		}
	})
}

// tcpProxy forwards a local port to the API server and can be cut off and
// restored on the same address, like an API server that goes away.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	lis   net.Listener
	conns map[net.Conn]bool
}

func newTCPProxy(t *testing.T, targetURL string) *tcpProxy {
	t.Helper()
	u, err := url.Parse(targetURL)
	if err != nil || u.Host == "" {
		t.Fatalf("API server address %q: want a URL with a host (%v)", targetURL, err)
	}
	p := &tcpProxy{t: t, target: u.Host, conns: map[net.Conn]bool{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(func() { p.cut() })
	return p
}

func (p *tcpProxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go pipe(c, up)
			go pipe(up, c)
		}
	}()
}

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes the listener and every open connection and returns how many
// connections it closed.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	return n
}

func (p *tcpProxy) restore() {
	var lis net.Listener
	var err error
	// The port was just released; retry briefly in case it lingers.
	for range 50 {
		if lis, err = net.Listen("tcp", p.addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("re-listening on %s: %v", p.addr, err)
	}
	p.serve(lis)
}

func listenersJSON(t *testing.T, r *xds.Resources) string {
	t.Helper()
	var b strings.Builder
	for _, l := range r.Listeners {
		out, err := protojson.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	return b.String()
}
