// Package discovery serves the cluster's Services, with their ready
// endpoints, TrafficPolicies and the Gateway API routes naming them as
// parents, to agents over delta xDS: one resource per Service (package
// resource), subscriptions to everything, to namespaces or
// to single Services. It watches the API server once for all agents, so
// the API server's cost does not grow with the number of injected pods.
// Streams are TLS, and each must carry a service-account token of audience
// tandem-discovery from a namespace with injection enabled.
package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	dresource "github.com/tandem-mesh/tandem/internal/discovery/resource"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Audience is the audience of the tokens agents present.
const Audience = wellknown.DiscoveryAudience

// Port is discovery's port on the injector's pods.
const Port = wellknown.DiscoveryPort

// Options configure a Server.
type Options struct {
	// Sources list-watch the cluster's Services, EndpointSlices, policies
	// and routes.
	Sources kubewatch.Sources
	// Kube reviews tokens and reads pods, and namespaces when Namespace is nil.
	Kube kubernetes.Interface
	// Metadata watches the Nodes' metadata, whose zone labels agents are
	// told, and the pods' and service accounts' metadata, against which
	// agents' tokens are checked without a TokenReview each; nil serves no
	// zones and reviews every token.
	Metadata metadata.Interface
	// Namespace reads a namespace, from a cache in the injector: every
	// agent's stream is checked against its namespace, and reading it from
	// the API server would cost a request per connecting agent.
	Namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
	// TLS serves discovery's certificate.
	TLS *tls.Config
	// Refused are namespaces never served, whatever their labels: the
	// injector's own and the system namespaces, which are never injected.
	Refused []string
	Logger  *slog.Logger
}

// Server is discovery: a watch of the cluster, a cache of resources, and
// the gRPC server agents stream from.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   *Cache
	nodes   *nodeZones
	watch   *kubewatch.Watcher
	auth    *authenticator
	agents  *agents
	synced  atomic.Bool   // the informers synced: changes update the cache
	serving chan struct{} // closed once the cache holds every Service: streams are answered
	// updateMu serialises reading the caches and storing the resource:
	// the informers call in from their own goroutines, and the later of two
	// updates must be the one that reads the later state.
	updateMu sync.Mutex
	// streams counts open streams (for metrics and tests).
	streams atomic.Int64
	// byPod holds the open streams of each pod, ended when it is deleted.
	byPodMu sync.Mutex
	byPod   map[types.UID]map[*int]context.CancelFunc
	sent    atomic.Int64 // bytes of responses sent

	refusalsMu sync.Mutex
	refusals   map[codes.Code]uint64 // streams refused, by gRPC code
}

// New builds the server; Start runs it.
func New(o Options) (*Server, error) {
	if o.TLS == nil {
		return nil, errors.New("discovery: a TLS configuration is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{opts: o, log: o.Logger, cache: NewCache(), serving: make(chan struct{}), refusals: map[codes.Code]uint64{},
		byPod: map[types.UID]map[*int]context.CancelFunc{}}
	s.agents = newAgents(o.Logger)
	var local *localTokens
	var err error
	if o.Metadata != nil && o.Kube != nil {
		if local, err = newLocalTokens(o.Kube.CoreV1().RESTClient(), o.Metadata, s.log, s.endPodStreams); err != nil {
			return nil, err
		}
	}
	s.auth = newAuthenticator(o, local, s.countRefusal)
	if s.nodes, err = newNodeZones(o.Metadata, s.log); err != nil {
		return nil, err
	}
	s.watch, err = kubewatch.New(o.Sources, nil, kubewatch.Handler{
		ServiceChanged:   s.update,
		EndpointsChanged: s.update,
		WatchError: func(what, _ string, err error) {
			s.log.Warn("watch failed; serving the last state and retrying with backoff", "resource", what, "error", err)
		},
		Unserved: kubewatch.LogUnserved(s.log),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// update rebuilds one Service's resource from the caches.
func (s *Server) update(key string) {
	if !s.synced.Load() {
		return // the first full build covers it
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	svc, slices, policies, ok := s.watch.Service(key)
	if !ok {
		s.cache.Delete(ns, name)
		return
	}
	httpRoutes, grpcRoutes := s.watch.Routes(key)
	r, err := dresource.FromObjects(dresource.Objects{Service: svc, EndpointSlices: slices, Policies: policies, HTTPRoutes: httpRoutes, GRPCRoutes: grpcRoutes})
	if err != nil {
		s.log.Error("Service not served", "service", key, "error", err)
		return
	}
	if err := s.cache.Set(r); err != nil {
		s.log.Error("Service not served", "service", key, "error", err)
	}
}

// Cache is the server's resource cache.
func (s *Server) Cache() *Cache { return s.cache }

// Ready reports whether the cache is complete and streams are answered.
func (s *Server) Ready() bool {
	select {
	case <-s.serving:
		return true
	default:
		return false
	}
}

// NeedLeaderElection is false: every replica serves discovery.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves on addr until ctx ends.
func (s *Server) Start(ctx context.Context, lis net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.watch.Run(ctx) })
	wg.Go(func() { s.nodes.run(ctx) })
	wg.Go(func() { s.auth.local.run(ctx) })
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.opts.TLS)),
		grpc.StreamInterceptor(s.intercept),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	delta := deltaserver.NewServer(ctx, byType{services: s.cache, nodes: s.nodes}, callbacks{s}, config.DeactivateLegacyWildcard())
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, ads{delta: delta})
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()

	start := time.Now()
	if err := s.watch.WaitForSync(ctx); err != nil || !cache.WaitForCacheSync(ctx.Done(), s.nodes.synced) {
		g.Stop()
		<-errc
		return nil
	}
	s.synced.Store(true)
	for _, key := range s.watch.ServiceKeys() {
		s.update(key)
	}
	// Only a complete cache is served: a stream opened during the build
	// would be told that the Services not built yet were removed.
	close(s.serving)
	s.log.Info("discovery serving", "services", s.cache.Len(), "syncedAfter", time.Since(start).Round(time.Millisecond), "address", lis.Addr())
	select {
	case <-ctx.Done():
		g.Stop()
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("discovery: %w", err)
	}
}

// intercept refuses streams without a valid token, and holds the others
// until the cache is complete: an agent must never take a partial cache for
// the cluster, and one that connects while discovery starts is answered the
// moment it can be, not after a retry.
func (s *Server) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, err := s.auth.check(ss.Context())
	if err != nil {
		return err
	}
	select {
	case <-s.serving:
	case <-ss.Context().Done():
		return status.Error(codes.Unavailable, "discovery is starting: the cluster's state is not loaded yet")
	}
	s.streams.Add(1)
	defer s.streams.Add(-1)
	s.log.Debug("stream opened", "agent", id)
	from := ""
	if p, ok := peer.FromContext(ss.Context()); ok {
		from = p.Addr.String()
	}
	ctx := withIdentity(ss.Context(), id, from)
	if id.podUID != "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer s.trackPod(id.podUID, cancel)()
	}
	return handler(srv, identified{ServerStream: ss, ctx: ctx})
}

// trackPod records a stream of a pod; the returned function forgets it.
func (s *Server) trackPod(uid types.UID, cancel context.CancelFunc) func() {
	key := new(int)
	s.byPodMu.Lock()
	if s.byPod[uid] == nil {
		s.byPod[uid] = map[*int]context.CancelFunc{}
	}
	s.byPod[uid][key] = cancel
	s.byPodMu.Unlock()
	return func() {
		s.byPodMu.Lock()
		delete(s.byPod[uid], key)
		if len(s.byPod[uid]) == 0 {
			delete(s.byPod, uid)
		}
		s.byPodMu.Unlock()
	}
}

// endPodStreams ends the streams of a deleted pod: its token no longer
// admits it, and what it was sent stops there.
func (s *Server) endPodStreams(uid types.UID) {
	s.byPodMu.Lock()
	defer s.byPodMu.Unlock()
	for _, cancel := range s.byPod[uid] {
		cancel()
	}
}

// TokenChecks reports how many stream tokens were reviewed by the API
// server and how many were decided locally.
func (s *Server) TokenChecks() (reviewed, local int64) {
	return s.auth.reviews.Load(), s.auth.decidedLocally.Load()
}

// identified is a stream whose context says who it belongs to.
type identified struct {
	grpc.ServerStream
	ctx context.Context
}

func (i identified) Context() context.Context { return i.ctx }

// Streams is the number of open streams.
func (s *Server) Streams() int64 { return s.streams.Load() }

// SentBytes is the encoded size of every response sent.
func (s *Server) SentBytes() int64 { return s.sent.Load() }

// ads serves delta ADS; state-of-the-world streams are refused.
type ads struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	delta deltaserver.Server
}

func (a ads) DeltaAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(st, resource.AnyType)
}

type callbacks struct{ s *Server }

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.agents.open(ctx, id)
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.s.agents.closed(id) }

func (c callbacks) OnStreamDeltaRequest(id int64, r *discoverygrpc.DeltaDiscoveryRequest) error {
	c.s.agents.request(id, r)
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, r *discoverygrpc.DeltaDiscoveryResponse) {
	c.s.sent.Add(int64(proto.Size(r)))
	c.s.agents.response(id, r)
}

func (s *Server) countRefusal(c codes.Code) {
	s.refusalsMu.Lock()
	s.refusals[c]++
	s.refusalsMu.Unlock()
}
