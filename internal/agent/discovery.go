package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// DiscoveryOptions configure the discovery source.
type DiscoveryOptions struct {
	// Address is discovery's host:port.
	Address string
	// TLS verifies discovery's certificate; it must have RootCAs set.
	TLS *tls.Config
	// TokenFile holds the projected service-account token (audience
	// tandem-discovery) sent with each stream; it is read again for every
	// stream, as the kubelet rotates it.
	TokenFile string
	// NodeID names the agent in discovery's logs.
	NodeID string
	// OnDemand subscribes only to the Services given to Agent.Subscribe
	// (a proxyless app's dialled Services) instead of the namespaces or
	// everything.
	OnDemand bool
	// FallbackAfter is how long discovery may be unreachable before the
	// agent watches the API server; 5s when zero.
	FallbackAfter time.Duration
	// Dial adds dial options (tests).
	Dial []grpc.DialOption
}

// discoverySource follows discovery over one delta xDS stream at a time,
// reconnecting with backoff. It holds every resource it received, in wire
// form, and their versions, which a new stream sends as
// initial_resource_versions so that nothing unchanged is sent again.
// Resources are decoded into objects when translation reads them: the
// objects of 1,000 Services take ~3.5 MiB of heap, their wire form a tenth.
type discoverySource struct {
	opts  DiscoveryOptions
	a     *Agent
	log   *slog.Logger
	conn  *grpc.ClientConn
	scope []string // subscription names of a fixed scope; nil when on demand

	// changed is kicked when the stream comes up or goes down.
	changed chan struct{}

	mu       sync.Mutex
	held     map[string][]byte // serialized Services by resource name, "namespace/name"
	versions map[string]string
	// backends are, by held resource, the Services its routes send to: a
	// subscription follows them too, where it does not already.
	backends map[string][]string
	dialed   map[string]bool // on demand: the Services the app dials
	want     map[string]bool // names to subscribe to
	sent     map[string]bool // names the current stream subscribed to
	stream   discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	sendMu   sync.Mutex // one Send at a time on stream
	up       bool
	since    time.Time // when the current stream was first answered
	refused  string    // discovery's latest refusal of the stream
	// fallbacks counts the times the API server was watched instead.
	fallbacks uint64
	// answer is the latest ACK or NACK of a Service response on the
	// current stream (guarded by sendMu): a report repeats it.
	answer *discoverygrpc.DeltaDiscoveryRequest
}

func newDiscoverySource(o DiscoveryOptions, namespaces []string, a *Agent) (*discoverySource, error) {
	if o.TLS == nil || o.TLS.RootCAs == nil {
		return nil, errors.New("discovery: a TLS configuration with the CA that signed discovery's certificate is required")
	}
	if o.FallbackAfter == 0 {
		o.FallbackAfter = 5 * time.Second
	}
	d := &discoverySource{
		opts: o, a: a, log: a.log.With("component", "discovery"),
		changed: make(chan struct{}, 1),
		held:    map[string][]byte{}, versions: map[string]string{}, backends: map[string][]string{},
		dialed: map[string]bool{}, want: map[string]bool{}, sent: map[string]bool{},
	}
	switch {
	case o.OnDemand:
	case len(namespaces) == 0:
		d.scope = []string{"*"}
	default:
		for _, ns := range namespaces {
			d.scope = append(d.scope, resource.NamespaceName(ns))
		}
	}
	for _, n := range d.scope {
		d.want[n] = true
	}
	opts := append([]grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 5 * time.Second}),
		grpc.WithTransportCredentials(credentials.NewTLS(o.TLS)),
		grpc.WithPerRPCCredentials(tokenFile(o.TokenFile)),
	}, o.Dial...)
	conn, err := grpc.NewClient(o.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("discovery address %q: %w", o.Address, err)
	}
	d.conn = conn
	return d, nil
}

func (*discoverySource) name() string { return "discovery" }

func (d *discoverySource) isUp() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up
}

func (d *discoverySource) setUp(up bool) {
	d.mu.Lock()
	was := d.up
	d.up = up
	if up && !was {
		d.since, d.refused = time.Now(), ""
	}
	d.mu.Unlock()
	if up {
		d.a.metrics.discoveryUp.Set(1)
		if !was {
			d.a.metrics.discoverySince.SetToCurrentTime()
		}
	} else {
		d.a.metrics.discoveryUp.Set(0)
	}
	if was != up {
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
}

// reconnectBackoff paces the attempts to reach discovery, both the
// connection's and the stream's. Its ceiling is low so that agents are back
// within about a second of discovery's return (a restarted replica is
// otherwise waited on for gRPC's default of up to two minutes); the jitter
// spreads a fleet's attempts. A refused connection costs discovery nothing,
// and an accepted one is paced by its TokenReview client.
var reconnectBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}

// run keeps a stream open until ctx ends.
func (d *discoverySource) run(ctx context.Context) {
	defer d.conn.Close()
	attempt := 0
	lastErr := ""
	for ctx.Err() == nil {
		start := time.Now()
		err := d.follow(ctx)
		d.setUp(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			attempt = 0
		}
		wait := backoffDelay(reconnectBackoff, attempt)
		attempt++
		// Once per cause: while discovery is away the same error comes back
		// every second.
		level := slog.LevelWarn
		if err != nil && err.Error() == lastErr {
			level = slog.LevelDebug
		}
		if err != nil {
			lastErr = err.Error()
		}
		if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied {
			d.mu.Lock()
			d.refused = status.Convert(err).Message()
			d.mu.Unlock()
		}
		d.log.Log(ctx, level, "discovery stream ended; reconnecting", "error", err, "retryIn", wait.Round(time.Millisecond))
		d.awaitConnection(ctx, wait)
	}
}

// backoffDelay is the wait before retry number attempt (from 0) under c.
func backoffDelay(c backoff.Config, attempt int) time.Duration {
	d := float64(c.BaseDelay) * math.Pow(c.Multiplier, float64(attempt))
	d = min(d, float64(c.MaxDelay))
	d *= 1 + c.Jitter*(2*rand.Float64()-1)
	return time.Duration(d)
}

// follow runs one stream: subscribe, then apply and ACK every response.
func (d *discoverySource) follow(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(d.conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	node, err := agentstatus.Node(d.opts.NodeID, d.a.Status())
	if err != nil {
		return err
	}
	d.mu.Lock()
	req := &discoverygrpc.DeltaDiscoveryRequest{
		Node:                    node,
		TypeUrl:                 resource.TypeURL,
		ResourceNamesSubscribe:  slices.Sorted(maps.Keys(d.want)),
		InitialResourceVersions: maps.Clone(d.versions),
	}
	if len(req.ResourceNamesSubscribe) == 0 {
		// An empty first request would mean "everything" to a server in
		// legacy wildcard mode; subscribe to a name no Service can have.
		req.ResourceNamesSubscribe = []string{noService}
	}
	d.sent = maps.Clone(d.want)
	d.stream = st
	d.mu.Unlock()
	d.sendMu.Lock()
	d.answer = nil
	d.sendMu.Unlock()
	defer func() {
		d.mu.Lock()
		d.stream = nil
		d.mu.Unlock()
	}()
	go d.report(sctx, st)
	// The zone first: asked for before the Services, it is answered
	// before them, and the first configuration already has it.
	if node := d.a.opts.Locality.Node; node != "" && d.a.opts.Locality.Zone == "" {
		if err := d.send(st, &discoverygrpc.DeltaDiscoveryRequest{Node: req.Node, TypeUrl: resource.NodeTypeURL,
			ResourceNamesSubscribe: []string{node}}); err != nil {
			return err
		}
	}
	if err := d.send(st, req); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		d.a.metrics.discoveryBytes.Add(float64(proto.Size(resp)))
		apply := d.apply
		if resp.GetTypeUrl() == resource.NodeTypeURL {
			apply = d.applyNode
		}
		if err := apply(resp); err != nil {
			// Not ACKed: a NACK keeps the previous versions.
			d.log.Error("discovery response rejected", "error", err)
			if err := d.sendAnswer(st, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.Nonce,
				ErrorDetail: status.New(codes.InvalidArgument, err.Error()).Proto()}); err != nil {
				return err
			}
			continue
		}
		if err := d.sendAnswer(st, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		if resp.GetTypeUrl() == resource.TypeURL {
			d.setUp(true)
			// New routes may send to Services not followed yet.
			d.resubscribe()
		}
	}
}

// applyNode takes the zone of the agent's Node from a response.
func (d *discoverySource) applyNode(resp *discoverygrpc.DeltaDiscoveryResponse) error {
	node := d.a.opts.Locality.Node
	for _, r := range resp.Resources {
		if r.Name != node || r.GetResource().GetTypeUrl() != resource.NodeTypeURL {
			return fmt.Errorf("resource %s of type %s is not the Node %s subscribed to", r.Name, r.GetResource().GetTypeUrl(), node)
		}
		var n pb.Node
		if err := proto.Unmarshal(r.GetResource().GetValue(), &n); err != nil {
			return fmt.Errorf("Node %s: %w", r.Name, err)
		}
		d.a.setZone(n.Zone, true)
	}
	if slices.Contains(resp.RemovedResources, node) {
		d.a.setZone("", false)
	}
	return nil
}

// connected reports whether the connection to discovery is up, answered or
// not.
func (d *discoverySource) connected() bool { return d.conn.GetState() == connectivity.Ready }

// awaitConnection waits up to limit, less when the connection to discovery
// comes back: the next stream starts the moment discovery answers again,
// paced by the connection's own backoff. On a connection that is up (the
// stream itself was refused) it waits the whole limit.
func (d *discoverySource) awaitConnection(ctx context.Context, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	s := d.conn.GetState()
	if s == connectivity.Ready {
		<-ctx.Done()
		return
	}
	d.conn.Connect()
	for s != connectivity.Ready {
		if !d.conn.WaitForStateChange(ctx, s) {
			return
		}
		s = d.conn.GetState()
	}
}

// noService is subscribed to when an on-demand agent follows nothing yet.
const noService = "-/-"

func (d *discoverySource) send(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, req *discoverygrpc.DeltaDiscoveryRequest) error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return st.Send(req)
}

// sendAnswer sends an ACK or NACK, remembered for the reports when it
// answers a Service response.
func (d *discoverySource) sendAnswer(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, req *discoverygrpc.DeltaDiscoveryRequest) error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if req.TypeUrl == resource.TypeURL {
		d.answer = req
	}
	return st.Send(req)
}

// apply stores a response's resources and tells the agent what changed:
// a Service whose endpoints alone changed is an endpoint update, anything
// else a rebuild. A resource that does not decode into objects rejects the
// whole response.
func (d *discoverySource) apply(resp *discoverygrpc.DeltaDiscoveryResponse) error {
	type change struct {
		key       string
		endpoints bool
	}
	var changes []change
	decoded := make(map[string]resource.Objects, len(resp.Resources))
	for _, r := range resp.Resources {
		if got := r.GetResource().GetTypeUrl(); got != resource.TypeURL {
			return fmt.Errorf("resource %s is a %s, want %s", r.Name, got, resource.TypeURL)
		}
		objs, err := decodeService(r.Name, r.GetResource().GetValue())
		if err != nil {
			return err
		}
		decoded[r.Name] = objs
	}
	d.mu.Lock()
	for _, r := range resp.Resources {
		old, had := d.held[r.Name]
		endpointsOnly := false
		if had {
			// It decoded when it arrived.
			if prev, err := decodeService(r.Name, old); err == nil {
				endpointsOnly = sameExceptEndpoints(prev, decoded[r.Name])
			}
		}
		d.held[r.Name] = r.GetResource().GetValue()
		d.versions[r.Name] = r.Version
		delete(d.backends, r.Name)
		if o := decoded[r.Name]; len(o.HTTPRoutes)+len(o.GRPCRoutes) > 0 && !slices.Contains(d.scope, "*") {
			d.backends[r.Name] = xds.RouteBackends(xds.Inputs{HTTPRoutes: o.HTTPRoutes, GRPCRoutes: o.GRPCRoutes})
		}
		changes = append(changes, change{r.Name, endpointsOnly})
	}
	for _, name := range resp.RemovedResources {
		if _, had := d.held[name]; had {
			changes = append(changes, change{key: name})
		}
		d.forget(name)
	}
	d.mu.Unlock()
	for _, c := range changes {
		if c.endpoints {
			d.a.updateEndpoints(d, c.key)
		} else {
			d.a.rebuildFor(d)
		}
	}
	return nil
}

// decodeService turns a resource's bytes into the objects translation
// reads, checking that it is the Service its name says.
func decodeService(name string, wire []byte) (resource.Objects, error) {
	var svc pb.Service
	if err := proto.Unmarshal(wire, &svc); err != nil {
		return resource.Objects{}, fmt.Errorf("resource %s: %w", name, err)
	}
	if want := resource.Name(svc.Namespace, svc.Name); want != name {
		return resource.Objects{}, fmt.Errorf("resource %s holds Service %s", name, want)
	}
	return resource.ToObjects(&svc)
}

func sameExceptEndpoints(a, b resource.Objects) bool {
	return reflect.DeepEqual(a.Service, b.Service) && reflect.DeepEqual(a.Policies, b.Policies) &&
		reflect.DeepEqual(a.HTTPRoutes, b.HTTPRoutes) && reflect.DeepEqual(a.GRPCRoutes, b.GRPCRoutes)
}

// subscribe changes an on-demand subscription to exactly keys (and the
// Services their routes send to).
func (d *discoverySource) subscribe(keys []string) {
	if !d.opts.OnDemand {
		return
	}
	d.mu.Lock()
	d.dialed = map[string]bool{}
	for _, k := range keys {
		d.dialed[k] = true
	}
	d.mu.Unlock()
	d.resubscribe()
}

// resubscribe brings the subscription to what is wanted now: the scope,
// or the dialled Services, and the backends of their routes that these
// do not cover. Held resources no longer wanted are forgotten.
func (d *discoverySource) resubscribe() {
	d.mu.Lock()
	d.want = d.wanted()
	st := d.stream
	var req *discoverygrpc.DeltaDiscoveryRequest
	if st != nil {
		req = &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.TypeURL}
		for k := range d.want {
			if !d.sent[k] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, k)
			}
		}
		for k := range d.sent {
			if !d.want[k] {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, k)
			}
		}
		slices.Sort(req.ResourceNamesSubscribe)
		slices.Sort(req.ResourceNamesUnsubscribe)
		d.sent = maps.Clone(d.want)
	}
	// The protocol has the client forget what it unsubscribed from; the
	// server sends no removal for it.
	dropped := false
	for name := range d.held {
		if !covered(d.want, name) {
			d.forget(name)
			dropped = true
		}
	}
	d.mu.Unlock()
	if dropped {
		d.a.rebuildFor(d)
	}
	if req == nil || len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) == 0 {
		return
	}
	d.log.Info("subscription changed", "subscribe", req.ResourceNamesSubscribe, "unsubscribe", req.ResourceNamesUnsubscribe)
	if err := d.send(st, req); err != nil {
		d.log.Warn("changing the subscription; the next stream carries it", "error", err)
	}
}

// wanted is the subscription: the scope or the dialled Services (the
// frontends), and the backends of the frontends' routes. Must hold d.mu.
func (d *discoverySource) wanted() map[string]bool {
	front := map[string]bool{}
	for _, n := range d.scope {
		front[n] = true
	}
	for n := range d.dialed {
		front[n] = true
	}
	want := maps.Clone(front)
	for name, backends := range d.backends {
		if !covered(front, name) {
			continue
		}
		for _, b := range backends {
			if !covered(front, b) {
				want[b] = true
			}
		}
	}
	return want
}

// covered reports whether a subscription to names includes the Service
// resource name: by wildcard, by its namespace or by name.
func covered(names map[string]bool, name string) bool {
	if names["*"] || names[name] {
		return true
	}
	ns, _, _ := strings.Cut(name, "/")
	return names[resource.NamespaceName(ns)]
}

// forget drops a held resource. Must hold d.mu.
func (d *discoverySource) forget(name string) {
	delete(d.held, name)
	delete(d.versions, name)
	delete(d.backends, name)
}

// Inputs lists every held resource's objects, decoded outside the lock so
// that responses keep being applied meanwhile.
func (d *discoverySource) Inputs() xds.Inputs {
	d.mu.Lock()
	held := maps.Clone(d.held)
	d.mu.Unlock()
	var in xds.Inputs
	routes := map[string]bool{}
	for name, wire := range held {
		o, err := decodeService(name, wire)
		if err != nil { // cannot happen: it decoded when it arrived
			d.log.Error("held resource unreadable", "resource", name, "error", err)
			continue
		}
		o.AddTo(&in, routes)
	}
	return in
}

func (d *discoverySource) Endpoints(key string) (*corev1.Service, []*discoveryv1.EndpointSlice, bool) {
	d.mu.Lock()
	wire, ok := d.held[key]
	d.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	o, err := decodeService(key, wire)
	if err != nil {
		return nil, nil, false
	}
	return o.Service, o.EndpointSlices, true
}

// tokenFile sends the projected token as a bearer token.
type tokenFile string

func (f tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("discovery token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(b))}, nil
}

func (tokenFile) RequireTransportSecurity() bool { return true }
