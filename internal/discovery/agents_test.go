package discovery_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// TestAgentsRecorded: discovery records each stream's pod (from its
// token), node, subscriptions, what it was sent and how it answered, and
// the report in its node; a refusal is counted once though reports repeat
// it; the record goes with the stream; the metrics say the same.
func TestAgentsRecorded(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	kube := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	discoverytest.ServiceAccount(t, kube, "shop", "default")
	pod, err := kube.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services("shop").Create(ctx, kubeobj.Service("shop", "cart", "grpc", 50051, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	disc := discoverytest.New(t, cfg)
	disc.Start()
	token, err := os.ReadFile(discoverytest.PodToken(t, kube, pod, discovery.Audience))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(disc.Addr, grpc.WithTransportCredentials(credentials.NewTLS(disc.ClientTLS())), grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	report := agentstatus.Agent{Version: "v9", Mode: "sidecar", Source: agentstatus.SourceNone, Proxies: []agentstatus.Proxy{}}
	node, err := agentstatus.Node("app.shop", report)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *discoverygrpc.DeltaDiscoveryRequest) {
		t.Helper()
		r.TypeUrl = resource.TypeURL
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, ResourceNamesSubscribe: []string{"shop/*"}})
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	one := func() agentstatus.Stream {
		t.Helper()
		a := disc.Server.Agents()
		if len(a) != 1 {
			t.Fatalf("%d records, want 1: %+v", len(a), a)
		}
		return a[0]
	}
	service := func(s agentstatus.Stream) agentstatus.Exchange {
		for _, e := range s.Exchanges {
			if e.Type == "Service" {
				return e
			}
		}
		return agentstatus.Exchange{}
	}
	poll.Until(t, 5*time.Second, "the response to be recorded", func() bool { return service(one()).Sent == first.Nonce })
	rec := one()
	if rec.Pod != "shop/app" || rec.ServiceAccount != "shop/default" || rec.Node != "app.shop" || !slices.Equal(rec.Subscriptions, []string{"shop/*"}) ||
		rec.Agent == nil || rec.Agent.Version != "v9" || rec.Agent.Mode != "sidecar" || rec.Peer == "" {
		t.Fatalf("record %+v (report %+v): want pod shop/app of shop/default, node app.shop, subscribed to shop/*, the report", rec, rec.Agent)
	}
	if s := service(rec).State(); s != agentstatus.StatePending {
		t.Fatalf("before the ACK: %s, want pending", s)
	}
	send(&discoverygrpc.DeltaDiscoveryRequest{ResponseNonce: first.Nonce})
	poll.Until(t, 5*time.Second, "the ACK to be recorded", func() bool { return service(one()).State() == agentstatus.StateSynced })

	// A report: the agent's Envoy refuses clusters. It repeats the ACK.
	report.Source = agentstatus.SourceDiscovery
	report.Proxies = []agentstatus.Proxy{{Node: "app.shop", Exchanges: []agentstatus.Exchange{
		{Type: "cluster", Sent: "v2", Acked: "v1", Rejected: &agentstatus.Rejection{Version: "v2", Error: "cluster x: bad timeout"}}}}}
	if node, err = agentstatus.Node("app.shop", report); err != nil {
		t.Fatal(err)
	}
	send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, ResponseNonce: first.Nonce})
	poll.Until(t, 5*time.Second, "the report to be recorded", func() bool { a := one().Agent; return a != nil && a.Source == agentstatus.SourceDiscovery })
	if e := one().Agent.Proxies[0].Exchanges[0]; e.State() != agentstatus.StateRejected || e.Rejected.Error != "cluster x: bad timeout" {
		t.Fatalf("reported proxy exchange %+v, want the refusal", e)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(disc.Server)
	expect := func(want string, names ...string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
			t.Error(err)
		}
	}
	expect(`
# HELP tandem_discovery_proxies_rejecting Connected agents whose proxy (Envoy or the proxyless app) refuses the latest configuration of a type, by type, as the agents report it.
# TYPE tandem_discovery_proxies_rejecting gauge
tandem_discovery_proxies_rejecting{type="cluster"} 1
# HELP tandem_discovery_agents Agents connected to this replica, by mode (sidecar, proxyless) and the source they report (discovery, api-server, none; unknown before their first report).
# TYPE tandem_discovery_agents gauge
tandem_discovery_agents{mode="sidecar",source="discovery"} 1
`, "tandem_discovery_proxies_rejecting", "tandem_discovery_agents")

	// The agent refuses discovery's next response; its reports repeat the
	// refusal, counted once.
	svc.Spec.Ports[0].Name = "grpc-web"
	if _, err := kube.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	nack := &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "resource shop/cart: unreadable"}
	send(&discoverygrpc.DeltaDiscoveryRequest{ResponseNonce: next.Nonce, ErrorDetail: nack})
	send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, ResponseNonce: next.Nonce, ErrorDetail: nack})
	poll.Until(t, 5*time.Second, "the refusal to be recorded", func() bool { return service(one()).State() == agentstatus.StateRejected })
	if e := service(one()); e.Rejected.Error != nack.Message || e.Acked != first.Nonce {
		t.Fatalf("after the NACK: %+v, want the agent's error and %s still accepted", e, first.Nonce)
	}
	poll.Until(t, 5*time.Second, "the repeated report to be read", func() bool { return one().ReportedAt.After(one().ConnectedAt) })
	expect(`
# HELP tandem_discovery_rejections_total Responses an agent refused (NACK).
# TYPE tandem_discovery_rejections_total counter
tandem_discovery_rejections_total 1
`, "tandem_discovery_rejections_total")

	cancel()
	poll.Until(t, 5*time.Second, "the record to go with the stream", func() bool { return len(disc.Server.Agents()) == 0 })

	// A stream with a bad token is refused and counted.
	bad, err := grpc.NewClient(disc.Addr, grpc.WithTransportCredentials(credentials.NewTLS(disc.ClientTLS())), grpc.WithPerRPCCredentials(bearer("not-a-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bst, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(bad).DeltaAggregatedResources(ctx)
	if err == nil {
		_, err = bst.Recv()
	}
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Fatalf("a bad token: %v, want Unauthenticated", err)
	}
	expect(`
# HELP tandem_discovery_streams_refused_total Streams refused before anything was served, by gRPC code (Unauthenticated: bad token; PermissionDenied: namespace not injected; Unavailable: the token could not be reviewed).
# TYPE tandem_discovery_streams_refused_total counter
tandem_discovery_streams_refused_total{code="Unauthenticated"} 1
`, "tandem_discovery_streams_refused_total")
}
