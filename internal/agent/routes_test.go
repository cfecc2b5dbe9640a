package agent

import (
	"context"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// routedTo is the cluster a Service port's route configuration sends its
// first rule to, in sidecar mode; "" when it has no route from a route
// object.
func routedTo(h *harness, host string) string {
	f := h.rec.lastFull()
	if f == nil {
		return ""
	}
	rc, ok := names(f.Routes)[host].(*routev3.RouteConfiguration)
	if !ok {
		return ""
	}
	r := rc.GetVirtualHosts()[0].GetRoutes()[0]
	if r.GetName() == "default" {
		return ""
	}
	if wc := r.GetRoute().GetWeightedClusters(); wc != nil {
		return wc.GetClusters()[0].GetName()
	}
	return r.GetRoute().GetCluster()
}

// Routes reach agents from discovery, inside their parent's resource, and
// from the API server; an agent that follows only some Services follows
// the Services their routes send to as well, and lets them go with the
// route.
func TestAgentFollowsRoutes(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{GatewayAPI: true})
	kube := kubeClient(t, cfg)
	c := testenv.Client(t, cfg)
	ctx := context.Background()
	enabledNamespace(t, kube, "shop")
	namespace(t, kube, "billing")
	create(t, kube.CoreV1().Services("shop").Create, kubeobj.Service("shop", "reviews", "grpc", 50051, ""))
	create(t, kube.CoreV1().Services("shop").Create, kubeobj.Service("shop", "reviews-v2", "grpc", 50051, ""))
	create(t, kube.CoreV1().Services("billing").Create, kubeobj.Service("billing", "ledger", "grpc", 50051, ""))
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "reviews-canary"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: "reviews"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "reviews-v2", Port: new(gatewayv1.PortNumber(50051))}, Weight: new(int32(90))}},
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "ledger", Namespace: new(gatewayv1.Namespace("billing")), Port: new(gatewayv1.PortNumber(50051))}, Weight: new(int32(10))}},
			}}},
		},
	}
	if err := c.Create(ctx, route); err != nil {
		t.Fatal(err)
	}
	reviewsHost := xds.ServiceHost("shop", "reviews", 50051)
	v2, ledger := xds.ClusterName("shop", "reviews-v2", 50051), xds.ClusterName("billing", "ledger", 50051)

	t.Run("FromTheAPIServer", func(t *testing.T) {
		h := startAgent(t, cfg, Options{})
		poll.Until(t, 5*time.Second, "the route from the API server", func() bool { return routedTo(h, reviewsHost) == v2 })
	})

	disc := discoverytest.New(t, cfg)
	disc.Start()
	opts := func(o DiscoveryOptions) *DiscoveryOptions {
		o.Address, o.TLS, o.NodeID = disc.Addr, disc.ClientTLS(), "test"
		o.TokenFile = discoverytest.Token(t, kube, "shop", "app", discovery.Audience)
		o.FallbackAfter = time.Hour
		return &o
	}

	t.Run("NamespaceScope", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Namespaces: []string{"shop"}, Discovery: opts(DiscoveryOptions{})})
		poll.Until(t, 5*time.Second, "the route, and its backend in another namespace", func() bool {
			return routedTo(h, reviewsHost) == v2 && clusters(h)[ledger]
		})
	})

	t.Run("OnDemand", func(t *testing.T) {
		h := startAgent(t, unreachable(t), Options{Mode: xds.Proxyless, Discovery: opts(DiscoveryOptions{OnDemand: true})})
		h.agent.Subscribe([]string{"shop/reviews"})
		poll.Until(t, 5*time.Second, "the dialled Service and both backends of its route", func() bool {
			got := clusters(h)
			return got[xds.ClusterName("shop", "reviews", 50051)] && got[v2] && got[ledger]
		})
		if err := c.Delete(ctx, route); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "the backends let go with the route", func() bool {
			got := clusters(h)
			return got[xds.ClusterName("shop", "reviews", 50051)] && !got[v2] && !got[ledger]
		})
	})
}
