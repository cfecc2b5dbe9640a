package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	pb "google.golang.org/grpc/examples/helloworld/helloworld"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/examples/greeter"
	"github.com/tandem-mesh/tandem/internal/controller/routestatus"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// The routed Service "greeter" has endpoints of its own; its routes send
// to greeter-v1 and greeter-v2.
var (
	ownEndpoints = backends[3:5]
	v1Endpoints  = backends[0:2]
	v2Endpoints  = backends[2:3]
)

// outcome counts the answers of calls per backend, and the failures by
// status code.
type outcome struct {
	answers  map[string]int
	failures map[codes.Code]int
}

func (o outcome) on(endpoints []string) int {
	n := 0
	for _, e := range endpoints {
		n += o.answers[e]
	}
	return n
}

func (o outcome) String() string {
	return fmt.Sprintf("answers %v, failures %v", o.answers, o.failures)
}

// callEach makes n SayHello calls, each on its own, with md when set,
// counted by the backend that answered.
func callEach(conn *grpc.ClientConn, n int, md metadata.MD) outcome {
	client := pb.NewGreeterClient(conn)
	return each(n, func(ctx context.Context) (string, error) {
		if md != nil {
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		reply, err := client.SayHello(ctx, &pb.HelloRequest{Name: "e2e"})
		if err != nil {
			return "", err
		}
		return greeter.Backend(reply.GetMessage())
	})
}

// checkEach makes n health checks (another method of the same servers),
// counted by the address that answered.
func checkEach(conn *grpc.ClientConn, n int) outcome {
	client := healthpb.NewHealthClient(conn)
	return each(n, func(ctx context.Context) (string, error) {
		var p peer.Peer
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			return "", err
		}
		host, _, err := net.SplitHostPort(p.Addr.String())
		return host, err
	})
}

// each makes n calls, each with a timeout of its own, and counts the
// backends they name and the failures by status code.
func each(n int, call func(context.Context) (string, error)) outcome {
	o := outcome{answers: map[string]int{}, failures: map[codes.Code]int{}}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		backend, err := call(ctx)
		cancel()
		if err != nil {
			o.failures[status.Code(err)]++
			continue
		}
		o.answers[backend]++
	}
	return o
}

// recordingCaller calls, a millisecond apart, until stopped and keeps
// every failure.
type recordingCaller struct {
	conn     *grpc.ClientConn
	answered map[string]int
	failed   []failure
	halt     chan struct{}
	done     chan struct{}
}

type failure struct {
	at  time.Time
	err error
}

func startRecordingCaller(conn *grpc.ClientConn) *recordingCaller {
	c := &recordingCaller{conn: conn, answered: map[string]int{}, halt: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		client := pb.NewGreeterClient(conn)
		for {
			select {
			case <-c.halt:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			reply, err := client.SayHello(ctx, &pb.HelloRequest{Name: "e2e"})
			cancel()
			if err != nil {
				c.failed = append(c.failed, failure{time.Now(), err})
			} else {
				host, _ := greeter.Backend(reply.GetMessage())
				c.answered[host]++
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return c
}

func (c *recordingCaller) stop() (map[string]int, []failure) {
	close(c.halt)
	<-c.done
	return c.answered, c.failed
}

// raceFailures separates the calls grpc-go (1.85) fails in the instant a
// route table that sends to a new cluster is applied, and how long that
// lasted: its channel takes the new table before its balancer has the
// cluster, and a call in between fails UNAVAILABLE, "unknown cluster
// selected for RPC".
func raceFailures(failed []failure) (raced int, window time.Duration, other []error) {
	var first, last time.Time
	for _, f := range failed {
		if status.Code(f.err) != codes.Unavailable || !strings.Contains(f.err.Error(), "unknown cluster selected for RPC") {
			other = append(other, f.err)
			continue
		}
		if raced == 0 {
			first = f.at
		}
		last = f.at
		raced++
	}
	return raced, last.Sub(first), other
}

func serviceRef(name string, port int32, weight int32) gatewayv1.GRPCBackendRef {
	return gatewayv1.GRPCBackendRef{BackendRef: gatewayv1.BackendRef{Weight: &weight,
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: &port}}}
}

// TestProxylessRoutes: a grpc-go xDS client, fed by an agent following
// discovery, routed by GRPCRoutes on the Service it dials: a 90/10 split,
// a header match, a method match, a backend that does not exist; the
// injector's controller writes the routes' status meanwhile.
func TestProxylessRoutes(t *testing.T) {
	c, ok := startCluster(t)
	if !ok {
		return
	}
	ctx := context.Background()
	for name, eps := range map[string][]string{"greeter": ownEndpoints, "greeter-v1": v1Endpoints, "greeter-v2": v2Endpoints} {
		if _, err := c.kube.CoreV1().Services(ns).Create(ctx, kubeobj.Service(ns, name, "grpc", port, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, kubeobj.EndpointSlice(ns, name+"-abc", name, "grpc", port, eps...), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.StartManager(t, c.cfg, manager.Options{}, func(mgr ctrl.Manager) error {
		return routestatus.Setup(mgr, time.Second)
	})
	kc := testenv.Client(t, c.cfg)
	c.disc.Start()
	e := startAgentAt(t, c.cfg, c.socket, c.disc, c.token, xds.Locality{Namespace: ns})
	conn := c.dial(t, "greeter")
	warmUp(t, conn, ownEndpoints)

	route := &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeter"},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: "greeter", Port: new(int32(port))}}},
		},
	}
	// apply sets the route's rules and waits until the client follows them.
	// The status controller updates the route meanwhile: a conflict is
	// retried on the latest version.
	apply := func(t *testing.T, what string, followed func() bool, rules ...gatewayv1.GRPCRouteRule) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if route.ResourceVersion == "" {
				route.Spec.Rules = rules
				return kc.Create(ctx, route)
			}
			if err := kc.Get(ctx, client.ObjectKeyFromObject(route), route); err != nil {
				return err
			}
			route.Spec.Rules = rules
			return kc.Update(ctx, route)
		})
		if err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 10*time.Second, what, followed)
	}

	t.Run("CanarySplit90to10", func(t *testing.T) {
		// Calls go on while the route arrives: none may fail, though the
		// agent learns the backends only from the route, but for a race
		// of grpc-go's own (see raceFailures).
		calls := startRecordingCaller(conn)
		seen := outcome{answers: map[string]int{}}
		apply(t, "every endpoint of v1 and v2 to answer, and only they", func() bool {
			got := callEach(conn, 20, nil)
			if got.on(v1Endpoints)+got.on(v2Endpoints) != 20 {
				seen = outcome{answers: map[string]int{}}
				return false
			}
			for b, n := range got.answers {
				seen.answers[b] += n
			}
			return len(seen.answers) == len(v1Endpoints)+len(v2Endpoints)
		},
			gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v1", port, 90), serviceRef("greeter-v2", port, 10)}})
		answered, failed := calls.stop()
		raced, window, other := raceFailures(failed)
		t.Logf("while the route arrived: %v answered; %d calls failed in grpc-go's race, within %v; %d failed otherwise", answered, raced, window, len(other))
		if len(other) > 0 || window > 100*time.Millisecond {
			t.Errorf("while the route arrived: %d calls failed otherwise (%v); grpc-go's race failed calls for %v; want no other failure, the race within 100ms", len(other), other, window)
		}
		got := callEach(conn, 1000, nil)
		t.Logf("1000 calls through the 90/10 GRPCRoute: %v; %d on v1, %d on v2", got, got.on(v1Endpoints), got.on(v2Endpoints))
		if v1 := got.on(v1Endpoints); v1 < 850 || v1 > 950 || got.on(v1Endpoints)+got.on(v2Endpoints) != 1000 {
			t.Errorf("1000 calls: %v; want 850-950 on v1 %v, the rest on v2 %v, none failed", got, v1Endpoints, v2Endpoints)
		}
	})

	t.Run("HeaderMatch", func(t *testing.T) {
		apply(t, "calls with x-version: v2 to reach v2", func() bool {
			return callEach(conn, 20, metadata.Pairs("x-version", "v2")).on(v2Endpoints) == 20
		},
			gatewayv1.GRPCRouteRule{
				Matches:     []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-version", Value: "v2"}}}},
				BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v2", port, 1)}},
			gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v1", port, 1)}})
		with, without := callEach(conn, 200, metadata.Pairs("x-version", "v2")), callEach(conn, 200, nil)
		t.Logf("with the header: %v; without: %v", with, without)
		if with.on(v2Endpoints) != 200 {
			t.Errorf("200 calls with x-version: v2: %v; want all on v2 %v", with, v2Endpoints)
		}
		if without.on(v1Endpoints) != 200 {
			t.Errorf("200 calls without the header: %v; want all on v1 %v", without, v1Endpoints)
		}
	})

	t.Run("MethodMatch", func(t *testing.T) {
		sayHello := gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Service: new("helloworld.Greeter"), Method: new("SayHello")}}
		apply(t, "SayHello to reach v2", func() bool { return callEach(conn, 20, nil).on(v2Endpoints) == 20 },
			gatewayv1.GRPCRouteRule{Matches: []gatewayv1.GRPCRouteMatch{sayHello}, BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v2", port, 1)}},
			gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v1", port, 1)}})
		hello, health := callEach(conn, 200, nil), checkEach(conn, 200)
		t.Logf("SayHello: %v; Health/Check: %v", hello, health)
		if hello.on(v2Endpoints) != 200 {
			t.Errorf("200 SayHello calls: %v; want all on v2 %v", hello, v2Endpoints)
		}
		if health.on(v1Endpoints) != 200 {
			t.Errorf("200 Health/Check calls, another method: %v; want all on v1 %v", health, v1Endpoints)
		}
	})

	t.Run("StatusOfAGoodRoute", func(t *testing.T) {
		expectStatus(t, kc, route, map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs",
			wellknown.ConditionProxylessCompatible: "True/Compatible"})
	})

	t.Run("MissingBackend", func(t *testing.T) {
		apply(t, "calls to fail for the missing backend's share", func() bool { return callEach(conn, 20, nil).failures[codes.Unavailable] > 0 },
			gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v1", port, 50), serviceRef("greeter-v3", port, 50)}})
		got := callEach(conn, 400, nil)
		t.Logf("400 calls, half of them for a backend that does not exist: %v", got)
		unavailable := got.failures[codes.Unavailable]
		if unavailable < 140 || unavailable > 260 || got.on(v1Endpoints) != 400-unavailable {
			t.Errorf("400 calls: %v; want about half UNAVAILABLE, the others on v1 %v, never on the others", got, v1Endpoints)
		}
		expectStatus(t, kc, route, map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/BackendNotFound"})
	})

	t.Run("DeletedRouteBackToOwnEndpointsWithin1s", func(t *testing.T) {
		apply(t, "calls on v2 only", func() bool { return callEach(conn, 20, nil).on(v2Endpoints) == 20 },
			gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{serviceRef("greeter-v2", port, 1)}})
		start := time.Now()
		if err := kc.Delete(ctx, route); err != nil {
			t.Fatal(err)
		}
		var after time.Duration
		for {
			if got := callEach(conn, 1, nil); got.on(ownEndpoints) == 1 {
				after = time.Since(start)
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("calls did not return to the Service's own endpoints within 5s of the route's deletion")
			}
		}
		t.Logf("the first call on the Service's own endpoints %v after the route was deleted", after.Round(time.Millisecond))
		if after > time.Second {
			t.Errorf("calls returned to the Service's own endpoints %v after the route was deleted, want within 1s", after)
		}
		if got := callEach(conn, 200, nil); got.on(ownEndpoints) != 200 {
			t.Errorf("200 calls after the route was deleted: %v; want all on %v", got, ownEndpoints)
		}
		if !e.agent.FromDiscovery() {
			t.Error("the routes came from the API server, not from discovery")
		}
	})
}

// expectStatus waits until the route's status, read from the API server,
// has Tandem's entry for its parent with the conditions wanted
// ("True/Accepted") at the route's generation.
func expectStatus(t *testing.T, c client.Client, route *gatewayv1.GRPCRoute, want map[string]string) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() error {
		var got gatewayv1.GRPCRoute
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(route), &got); err != nil {
			return err
		}
		i := slices.IndexFunc(got.Status.Parents, func(p gatewayv1.RouteParentStatus) bool {
			return p.ControllerName == wellknown.RouteControllerName
		})
		if i < 0 {
			return fmt.Errorf("no status.parents entry of %s: %+v", wellknown.RouteControllerName, got.Status.Parents)
		}
		var problems []string
		for typ, w := range want {
			cond := meta.FindStatusCondition(got.Status.Parents[i].Conditions, typ)
			switch {
			case cond == nil:
				problems = append(problems, typ+" missing")
			case string(cond.Status)+"/"+cond.Reason != w || cond.ObservedGeneration != got.Generation:
				problems = append(problems, fmt.Sprintf("%s is %s/%s at generation %d (%s), want %s at %d", typ, cond.Status, cond.Reason, cond.ObservedGeneration, cond.Message, w, got.Generation))
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil
	})
}
