package discovery_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// An agent reconnecting the moment a restarted discovery accepts streams
// must find every Service it holds unchanged: nothing sent, nothing
// removed. Discovery accepts streams only once its cache is complete.
func TestRestartedDiscoveryServesOnlyACompleteCache(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns, services = "shop", 250 // envtest's service range holds 254
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, services)
	sem := make(chan struct{}, 16)
	for i := range services {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("svc-%d", i)
			if _, err := kube.CoreV1().Services(ns).Create(ctx, kubeobj.Service(ns, name, "grpc", 50051, ""), metav1.CreateOptions{}); err != nil {
				errs <- err
				return
			}
			if _, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, kubeobj.EndpointSlice(ns, name+"-1", name, "grpc", 50051,
				fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)), metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tokenFile := discoverytest.Token(t, kube, ns, "app", discovery.Audience)
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	disc := discoverytest.New(t, cfg)
	disc.Start()
	conn, err := grpc.NewClient(disc.Addr, grpc.WithTransportCredentials(credentials.NewTLS(disc.ClientTLS())),
		grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// What the agent holds: every Service's version.
	held := map[string]string{}
	first, err := openStream(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	for len(held) < services {
		resp, err := first.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Resources {
			held[r.Name] = r.Version
		}
		if err := first.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.TypeURL, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
	}
	disc.Stop()

	// Reconnect as fast as possible while discovery starts again.
	type result struct {
		resp *discoverygrpc.DeltaDiscoveryResponse
		err  error
	}
	// Several agents at once, as a fleet does.
	const agents = 8
	got := make(chan result, agents)
	for range agents {
		go func() {
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				st, err := openStream(conn, held)
				if err == nil {
					var resp *discoverygrpc.DeltaDiscoveryResponse
					if resp, err = st.Recv(); err == nil {
						got <- result{resp: resp}
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
			got <- result{err: fmt.Errorf("no stream accepted within 60s")}
		}()
	}
	disc.Start()
	for range agents {
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.resp.RemovedResources) > 0 || len(r.resp.Resources) > 0 {
			t.Fatalf("the first answer after the restart removed %d and sent %d of %d unchanged Services",
				len(r.resp.RemovedResources), len(r.resp.Resources), services)
		}
	}
}

func openStream(conn *grpc.ClientConn, initial map[string]string) (discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, error) {
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(context.Background())
	if err != nil {
		return nil, err
	}
	return st, st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "test"}, TypeUrl: resource.TypeURL,
		ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: initial})
}

// bearer sends the token with each stream.
type bearer []byte

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
