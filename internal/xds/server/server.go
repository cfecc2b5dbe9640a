// Package server serves the agent's xDS resources over ADS (state of the
// world and delta) on a Unix socket. Each resource type lives in its own
// go-control-plane LinearCache, so a change to one resource is pushed on its
// own: an EndpointSlice change sends only the ClusterLoadAssignments that
// changed, and a full rebuild sends only the resources that differ from what
// is already served. Every resource passes xds.Validate first; one that
// fails is never published and the last good version of it keeps being served.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Type names used in logs and metric labels.
const (
	Listener = "listener"
	Route    = "route"
	Cluster  = "cluster"
	Endpoint = "endpoint"
)

var typeNames = map[string]string{
	resource.ListenerType: Listener,
	resource.RouteType:    Route,
	resource.ClusterType:  Cluster,
	resource.EndpointType: Endpoint,
}

// Envoy's make-before-break order: clusters before the endpoints that fill
// them, listeners before their routes; removals the other way round.
var (
	updateOrder = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}
	removeOrder = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}
)

// Options configure a Server.
type Options struct {
	// Logger receives NACKs, rejected resources and stream events; the
	// default logger when nil.
	Logger *slog.Logger
	// Proxyless serves gRPC clients only. gRPC never subscribes by wildcard,
	// so an empty request must mean "nothing" rather than "everything".
	Proxyless bool
	// OnListenerNames, when set, is given the listener names all clients
	// ask for whenever that set changes: the Services a proxyless app dials.
	OnListenerNames func([]string)
}

// Server holds the served configuration and the state of its clients.
type Server struct {
	log       *slog.Logger
	proxyless bool
	caches    map[string]*cachev3.LinearCache
	gate      *gate
	tracker   *tracker

	mu        sync.Mutex // serialises publishing
	published map[string]map[string]*compact
	endpoints map[string]int // ready endpoints per published cluster
	rejected  map[string]uint64
	updates   map[string]uint64
}

// New returns a Server; clients get no answer until the first Publish.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Versions carry the process start time, so a client that reconnects
	// after an agent restart never mistakes an old version for a current one.
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	s := &Server{
		log:       o.Logger,
		proxyless: o.Proxyless,
		caches:    map[string]*cachev3.LinearCache{},
		tracker:   newTracker(o.Logger, o.OnListenerNames),
		published: map[string]map[string]*compact{},
		endpoints: map[string]int{},
		rejected:  map[string]uint64{},
		updates:   map[string]uint64{},
	}
	caches := map[string]cachev3.Cache{}
	for typeURL := range typeNames {
		c := cachev3.NewLinearCache(typeURL, cachev3.WithVersionPrefix(prefix), cachev3.WithLogger(logAdapter{o.Logger}))
		s.caches[typeURL] = c
		caches[typeURL] = c
		s.published[typeURL] = map[string]*compact{}
	}
	s.gate = &gate{inner: &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}}
	return s
}

// Listen opens the Unix socket at path for Serve: a stale socket left by a
// previous run is removed first, and the socket is made world-writable so
// a client running as another user can connect.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("xDS socket %s: the path exists and is not a socket (%s); remove it or choose another --xds-socket", path, fi.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale xDS socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("xDS socket directory: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("xDS socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		lis.Close()
		return nil, fmt.Errorf("xDS socket: %w", err)
	}
	return lis, nil
}

// Serve answers ADS streams, state of the world and delta, on lis until ctx
// ends. Streams are never-ending, so ending ctx closes them rather than
// waiting for them.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	var opts []config.XDSOption
	if s.proxyless {
		opts = append(opts, config.DeactivateLegacyWildcard())
	} else {
		// Envoy subscribes to listeners and clusters by wildcard, to routes
		// and endpoints always by name.
		opts = append(opts, config.DeactivateLegacyWildcardForTypes([]string{resource.RouteType, resource.EndpointType}))
	}
	opts = append(opts, func(o *config.Opts) { o.Logger = logAdapter{s.log} })
	xdsServer := serverv3.NewServer(ctx, s.gate, s.tracker, opts...)
	g := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, xdsServer)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			g.Stop()
		case <-done:
		}
	}()
	err := g.Serve(lis)
	if ctx.Err() != nil || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Ready reports whether a connected Envoy has ACKed both clusters and
// listeners.
func (s *Server) Ready() bool { return s.tracker.ready() }

// Clients reports, for every connected client, the latest response of
// each type and its answer: the proxy's ACKs and refusals.
func (s *Server) Clients() []agentstatus.Proxy { return s.tracker.clients() }

// ClientsChanged receives a value whenever Clients may have changed.
func (s *Server) ClientsChanged() <-chan struct{} { return s.tracker.changed }

// Publish makes r the whole served configuration. Only resources that are
// new or differ from the served ones are pushed; served resources missing
// from r are removed. A resource failing validation is not published: the
// served version of it, if any, stays.
func (s *Server) Publish(r *xds.Resources) {
	want := map[string][]types.Resource{
		resource.ListenerType: r.Listeners,
		resource.RouteType:    r.Routes,
		resource.ClusterType:  r.Clusters,
		resource.EndpointType: r.Endpoints,
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	updates := map[string]map[string]types.Resource{}
	removals := map[string][]string{}
	for typeURL, rs := range want {
		names := make(map[string]bool, len(rs))
		for _, res := range rs {
			names[cachev3.GetResourceName(res)] = true
		}
		updates[typeURL] = s.changed(typeURL, rs)
		for name := range s.published[typeURL] {
			if !names[name] {
				removals[typeURL] = append(removals[typeURL], name)
			}
		}
	}
	// A changed cluster restarts its EDS subscription in Envoy; sending its
	// endpoints again completes the cluster's warm-up without waiting for
	// Envoy's initial fetch timeout.
	eds := updates[resource.EndpointType]
	for name := range updates[resource.ClusterType] {
		if _, ok := eds[name]; ok {
			continue
		}
		if cla, ok := s.published[resource.EndpointType][name]; ok {
			eds[name] = cla
		}
	}
	for _, typeURL := range updateOrder {
		s.apply(typeURL, updates[typeURL], nil)
	}
	for _, typeURL := range removeOrder {
		s.apply(typeURL, nil, removals[typeURL])
	}
	s.gate.release()
}

// PublishEndpoints updates the given ClusterLoadAssignments only, leaving
// every other resource alone: the incremental path for EndpointSlice changes.
func (s *Server) PublishEndpoints(clas []*endpointv3.ClusterLoadAssignment) {
	rs := make([]types.Resource, len(clas))
	for i, c := range clas {
		rs[i] = c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(resource.EndpointType, s.changed(resource.EndpointType, rs), nil)
}

// changed returns, in wire form, the valid resources of rs that differ from
// the served ones, with the endpoint count of each ClusterLoadAssignment.
// Must be called with s.mu held.
func (s *Server) changed(typeURL string, rs []types.Resource) map[string]types.Resource {
	out := map[string]types.Resource{}
	served := s.published[typeURL]
	for _, res := range rs {
		name := cachev3.GetResourceName(res)
		c, err := newCompact(name, res)
		if err == nil {
			if old, ok := served[name]; ok && old.equal(c) {
				continue
			}
			err = xds.Validate(res)
		}
		if err != nil {
			s.rejected[typeURL]++
			s.log.Error("xDS resource failed validation and is not published; the last good version stays",
				"type", typeNames[typeURL], "name", name, "error", err)
			continue
		}
		if cla, ok := res.(*endpointv3.ClusterLoadAssignment); ok {
			s.endpoints[name] = countEndpoints(cla)
		}
		out[name] = c
	}
	return out
}

// apply pushes one type's changes to its cache. Must be called with s.mu held.
func (s *Server) apply(typeURL string, update map[string]types.Resource, remove []string) {
	if len(update) == 0 && len(remove) == 0 {
		return
	}
	served := s.published[typeURL]
	for name, res := range update {
		served[name] = res.(*compact)
	}
	for _, name := range remove {
		delete(served, name)
		delete(s.endpoints, name)
	}
	s.updates[typeURL] += uint64(len(update) + len(remove))
	if err := s.caches[typeURL].UpdateResources(update, remove); err != nil {
		s.log.Error("updating the xDS cache", "type", typeNames[typeURL], "error", err)
	}
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

// Resources returns the served resources of one type (Listener, Route,
// Cluster or Endpoint), keyed by name.
func (s *Server) Resources(typeName string) map[string]types.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	for typeURL, n := range typeNames {
		if n == typeName {
			out := make(map[string]types.Resource, len(s.published[typeURL]))
			for k, v := range s.published[typeURL] {
				res, err := v.decode(typeURL)
				if err != nil {
					s.log.Error("reading a served resource", "type", typeName, "error", err)
					continue
				}
				out[k] = res
			}
			return out
		}
	}
	return nil
}

// logAdapter sends go-control-plane's logs to slog; its Info messages are
// per-watch chatter, so they go to debug.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Debugf(f string, args ...any) { a.l.Debug(fmt.Sprintf(f, args...)) }
func (a logAdapter) Infof(f string, args ...any)  { a.l.Debug(fmt.Sprintf(f, args...)) }
func (a logAdapter) Warnf(f string, args ...any)  { a.l.Warn(fmt.Sprintf(f, args...)) }
func (a logAdapter) Errorf(f string, args ...any) { a.l.Error(fmt.Sprintf(f, args...)) }
