package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/logbuf"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// unreachable is an API server configuration that answers nothing: an
// agent given it can only have its state from discovery.
func unreachable(t *testing.T) *rest.Config {
	return &rest.Config{Host: "https://" + testenv.FreeAddr(t), Timeout: time.Second}
}

func enabledNamespace(t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	create(t, kube.CoreV1().Namespaces().Create, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}})
}

func clusters(h *harness) map[string]bool {
	out := map[string]bool{}
	if f := h.rec.lastFull(); f != nil {
		for n := range names(f.Clusters) {
			out[n] = true
		}
	}
	return out
}

func TestAgentWithDiscovery(t *testing.T) {
	env, cfg := testenv.Start(t, testenv.Options{})
	kube := kubeClient(t, cfg)
	ctx := context.Background()
	enabledNamespace(t, kube, "shop")
	namespace(t, kube, "plain") // injection not enabled
	create(t, kube.CoreV1().Services("shop").Create, kubeobj.Service("shop", "cart", "grpc", 50051, ""))
	slice := create(t, kube.DiscoveryV1().EndpointSlices("shop").Create,
		kubeobj.EndpointSlice("shop", "cart-1", "cart", "grpc", 50051, "198.51.100.1", "198.51.100.2"))
	create(t, kube.CoreV1().Services("shop").Create, kubeobj.Service("shop", "pay", "grpc", 8080, ""))
	cart, pay := xds.ClusterName("shop", "cart", 50051), xds.ClusterName("shop", "pay", 8080)
	token := discoverytest.Token(t, kube, "shop", "app", discovery.Audience)
	nodeA := create(t, kube.CoreV1().Nodes().Create, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a",
		Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}})
	create(t, kube.CoreV1().Nodes().Create, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}})
	disc := discoverytest.New(t, cfg)
	disc.Start()
	opts := func(o DiscoveryOptions) *DiscoveryOptions {
		o.Address, o.TLS, o.NodeID = disc.Addr, disc.ClientTLS(), "test"
		if o.TokenFile == "" {
			o.TokenFile = token
		}
		if o.FallbackAfter == 0 {
			o.FallbackAfter = 500 * time.Millisecond
		}
		return &o
	}

	t.Run("ServesFromDiscoveryAlone", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Discovery: opts(DiscoveryOptions{})})
		if !h.agent.FromDiscovery() {
			t.Fatal("configuration not from discovery")
		}
		if got := clusters(h); !got[cart] || !got[pay] {
			t.Fatalf("clusters %v, want %s and %s", got, cart, pay)
		}
		full0, eds0 := h.rec.counts()
		kubeobj.SetAddresses(slice, "198.51.100.1", "198.51.100.2", "198.51.100.3")
		var err error
		if slice, err = kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "an endpoint update from discovery", func() bool { _, e := h.rec.counts(); return e > eds0 })
		if got := h.rec.lastEDS(); len(got) != 1 || got[0].ClusterName != cart || endpointCount(got[0]) != 3 {
			t.Fatalf("endpoint update: %d assignments, want %s with 3 endpoints", len(got), cart)
		}
		poll.Never(t, 500*time.Millisecond, "a full rebuild after an endpoint change", func() bool { f, _ := h.rec.counts(); return f > full0 })
	})

	t.Run("ZoneOfTheNode", func(t *testing.T) {
		zonal := kubeobj.Service("shop", "zonal", "grpc", 7000, "")
		zonal.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
		create(t, kube.CoreV1().Services("shop").Create, zonal)
		sl := kubeobj.EndpointSlice("shop", "zonal-1", "zonal", "grpc", 7000, "198.51.100.1", "198.51.100.2")
		for i, zone := range []string{"zone-a", "zone-b"} {
			sl.Endpoints[i].Zone = &zone
			sl.Endpoints[i].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
		}
		create(t, kube.DiscoveryV1().EndpointSlices("shop").Create, sl)
		cluster := xds.ClusterName("shop", "zonal", 7000)
		near := func(res *xds.Resources) string { // the address at priority 0
			for _, r := range res.Endpoints {
				if cla := r.(*endpointv3.ClusterLoadAssignment); cla.ClusterName == cluster && len(cla.Endpoints) == 2 {
					return cla.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
				}
			}
			return ""
		}
		first := startAgent(t, unreachable(t), Options{Discovery: opts(DiscoveryOptions{})})
		poll.Until(t, 5*time.Second, "discovery to serve the zonal Service", func() bool { return clusters(first)[cluster] })
		h := startAgent(t, unreachable(t), Options{Locality: xds.Locality{Node: "node-a"}, Discovery: opts(DiscoveryOptions{})})
		// The zone is asked for first: the first configuration has it.
		if got := h.agent.Locality().Zone; got != "zone-a" {
			t.Fatalf("zone %q, want zone-a, its Node's label", got)
		}
		if got := near(h.rec.full[0]); got != "198.51.100.1" {
			t.Fatalf("first configuration prefers %q, want the zone-a endpoint 198.51.100.1", got)
		}
		if testutil.ToFloat64(h.agent.metrics.zoneKnown) != 1 || testutil.ToFloat64(h.agent.metrics.nodeKnown) != 1 {
			t.Error("tandem_agent_zone_known and tandem_agent_node_known must be 1")
		}
		nodeA.Labels[corev1.LabelTopologyZone] = "zone-b"
		if _, err := kube.CoreV1().Nodes().Update(ctx, nodeA, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "the zone-b endpoint preferred after the Node moved", func() bool {
			return near(h.rec.lastFull()) == "198.51.100.2"
		})

		// A Node without the label, and an agent whose node is unknown.
		for _, node := range []string{"node-b", ""} {
			h := startAgent(t, unreachable(t), Options{Locality: xds.Locality{Node: node}, Discovery: opts(DiscoveryOptions{})})
			if got := h.agent.Locality().Zone; got != "" || near(h.rec.lastFull()) != "" {
				t.Errorf("node %q: zone %q, preferred %q; want neither", node, got, near(h.rec.lastFull()))
			}
			if testutil.ToFloat64(h.agent.metrics.zoneKnown) != 0 {
				t.Errorf("node %q: tandem_agent_zone_known is 1", node)
			}
		}
	})

	t.Run("NamespaceScope", func(t *testing.T) {
		create(t, kube.CoreV1().Services("plain").Create, kubeobj.Service("plain", "other", "grpc", 9000, ""))
		h := startAgent(t, unreachable(t), Options{Namespaces: []string{"plain"}, Discovery: opts(DiscoveryOptions{})})
		got := clusters(h)
		if !got[xds.ClusterName("plain", "other", 9000)] || got[cart] {
			t.Fatalf("subscribed to namespace plain: clusters %v", got)
		}
	})

	t.Run("OnDemand", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Mode: xds.Proxyless, Discovery: opts(DiscoveryOptions{OnDemand: true})})
		if got := clusters(h); len(got) != 0 {
			t.Fatalf("before any subscription: clusters %v", got)
		}
		h.agent.Subscribe([]string{"shop/cart"})
		poll.Until(t, 5*time.Second, "cart after subscribing to it", func() bool { return clusters(h)[cart] })
		if clusters(h)[pay] {
			t.Fatal("pay served without a subscription")
		}
		h.agent.Subscribe([]string{"shop/cart", "shop/pay"})
		poll.Until(t, 5*time.Second, "pay after subscribing to it", func() bool { return clusters(h)[pay] })
		h.agent.Subscribe([]string{"shop/pay"})
		poll.Until(t, 5*time.Second, "cart gone after unsubscribing", func() bool { return !clusters(h)[cart] })
	})

	t.Run("FallbackAndReturn", func(t *testing.T) {
		h := startAgent(t, cfg, Options{Discovery: opts(DiscoveryOptions{})})
		if !h.agent.FromDiscovery() {
			t.Fatal("not from discovery at start")
		}
		disc.Stop()
		// Last good configuration throughout, then the API server.
		if !h.agent.Synced() || !clusters(h)[cart] {
			t.Fatal("configuration lost when discovery stopped")
		}
		poll.Until(t, 10*time.Second, "the fallback to the API server", func() bool { return !h.agent.FromDiscovery() })
		if testutil.ToFloat64(h.agent.metrics.fallbacks) < 1 || !clusters(h)[cart] {
			t.Fatalf("after the fallback: %v fallbacks, clusters %v", testutil.ToFloat64(h.agent.metrics.fallbacks), clusters(h))
		}
		// A new agent while discovery is down starts from the API server.
		late := startAgent(t, cfg, Options{Discovery: opts(DiscoveryOptions{})})
		if late.agent.FromDiscovery() || !clusters(late)[cart] {
			t.Fatalf("new agent while discovery is down: from discovery %v, clusters %v", late.agent.FromDiscovery(), clusters(late))
		}
		disc.Start()
		poll.Until(t, 15*time.Second, "both agents back on discovery", func() bool {
			return h.agent.FromDiscovery() && late.agent.FromDiscovery()
		})
	})

	t.Run("ReportsToDiscovery", func(t *testing.T) {
		served := &fakeServed{changed: make(chan struct{}, 1)}
		o := opts(DiscoveryOptions{})
		o.NodeID = "reporter"
		h := startAgent(t, unreachable(t), Options{Discovery: o, Served: served})
		record := func() *agentstatus.Stream {
			for _, s := range disc.Server.Agents() {
				if s.Node == "reporter" {
					return &s
				}
			}
			return nil
		}
		poll.Until(t, 10*time.Second, "a report saying the agent serves from discovery", func() bool {
			r := record()
			return r != nil && r.Agent != nil && r.Agent.Source == agentstatus.SourceDiscovery
		})
		st := h.agent.Status()
		if d := st.Discovery; d == nil || !d.Connected || d.Address != disc.Addr || d.Services < 2 || d.Since.IsZero() {
			t.Fatalf("the agent's view of discovery %+v: want connected to %s, holding cart and pay", d, disc.Addr)
		}
		// The proxy refuses clusters: discovery hears it within the pacing.
		served.set([]agentstatus.Proxy{{Node: "reporter", Exchanges: []agentstatus.Exchange{
			{Type: "cluster", Sent: "v2", Acked: "v1", Rejected: &agentstatus.Rejection{Version: "v2", Error: "refused by the test"}}}}})
		poll.Until(t, 10*time.Second, "the refusal in discovery's record", func() bool {
			r := record()
			return r != nil && len(r.Agent.Proxies) == 1 && r.Agent.Proxies[0].Exchanges[0].State() == agentstatus.StateRejected
		})
		if e := record().Agent.Proxies[0].Exchanges[0]; e.Rejected.Error != "refused by the test" {
			t.Fatalf("reported %+v, want the proxy's own error", e)
		}
		// The report repeats the agent's last answer, which stays an ACK.
		for _, e := range record().Exchanges {
			if e.Type == "Service" && e.State() != agentstatus.StateSynced {
				t.Errorf("discovery's Service exchange after the reports: %+v, want synced", e)
			}
		}
	})

	t.Run("ResumesWithoutResending", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Discovery: opts(DiscoveryOptions{FallbackAfter: time.Minute})})
		before := testutil.ToFloat64(h.agent.metrics.discoveryBytes)
		disc.Stop()
		poll.Until(t, 5*time.Second, "the agent to see discovery gone", func() bool { return !h.agent.disc.isUp() })
		disc.Start()
		poll.Until(t, 15*time.Second, "the agent back on discovery", h.agent.disc.isUp)
		if got := testutil.ToFloat64(h.agent.metrics.discoveryBytes) - before; got >= 1000 {
			t.Errorf("resuming with nothing changed received %v bytes, want < 1 KB", got)
		}
	})

	// The tokens the refusals below forge would be served if they were
	// not expired and their namespace existed.
	t.Run("ForgedTokenAccepted", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Discovery: opts(DiscoveryOptions{
			TokenFile: discoverytest.ForgedToken(t, env, cfg, "shop", "app", discovery.Audience, time.Now().Add(time.Hour)), FallbackAfter: time.Hour})})
		if !h.agent.FromDiscovery() || !clusters(h)[cart] {
			t.Fatalf("a valid forged token: from discovery %v, clusters %v", h.agent.FromDiscovery(), clusters(h))
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name, token, want string
			tls               *tls.Config
		}{
			{"WrongAudience", discoverytest.Token(t, kube, "shop", "app", "https://kubernetes.default.svc"), "Unauthenticated", nil},
			{"NamespaceWithoutInjection", discoverytest.Token(t, kube, "plain", "app", discovery.Audience), "PermissionDenied", nil},
			{"RefusedNamespace", tokenIn(t, kube, "tandem-system"), "PermissionDenied", nil},
			{"WrongCA", token, "certificate signed by unknown authority", &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}},
			{"ExpiredToken", discoverytest.ForgedToken(t, env, cfg, "shop", "app", discovery.Audience, time.Now().Add(-time.Minute)), "expired", nil},
			{"UnknownNamespace", discoverytest.ForgedToken(t, env, cfg, "ghost", "app", discovery.Audience, time.Now().Add(time.Hour)), "Unauthenticated", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := opts(DiscoveryOptions{TokenFile: tc.token, FallbackAfter: time.Hour})
				if tc.tls != nil {
					o.TLS = tc.tls
				}
				var logs logbuf.Buffer
				a, err := New(Options{Sources: mustSources(t, unreachable(t)), Discovery: o, Publisher: &recorder{},
					Logger: newTextLogger(&logs)})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- a.Run(ctx) }()
				poll.Until(t, 10*time.Second, "the refusal in the agent's log", func() bool { return strings.Contains(logs.String(), tc.want) })
				if tc.tls == nil && !strings.Contains(tc.name, "Token") {
					// Refused by discovery itself: the report says why.
					poll.Until(t, 10*time.Second, "the refusal in the agent's status", func() bool { return a.Status().Discovery.Refused != "" })
				}
				cancel()
				<-done
				if a.Synced() {
					t.Fatal("a refused agent was served")
				}
			})
		}
	})
}

// fakeServed stands for the xDS server's clients.
type fakeServed struct {
	mu      sync.Mutex
	clients []agentstatus.Proxy
	changed chan struct{}
}

func (f *fakeServed) Clients() []agentstatus.Proxy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clients
}

func (f *fakeServed) ClientsChanged() <-chan struct{} { return f.changed }

func (f *fakeServed) set(c []agentstatus.Proxy) {
	f.mu.Lock()
	f.clients = c
	f.mu.Unlock()
	signal(f.changed)
}

func tokenIn(t *testing.T, kube kubernetes.Interface, ns string) string {
	enabledNamespace(t, kube, ns)
	return discoverytest.Token(t, kube, ns, "app", discovery.Audience)
}

func mustSources(t *testing.T, cfg *rest.Config) kubewatch.Sources {
	src, err := kubewatch.NewSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
