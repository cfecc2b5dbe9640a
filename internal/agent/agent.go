// Package agent keeps the xDS configuration in step with the cluster. Its
// state comes from a source: discovery (delta xDS from the injector's
// replicas) or, when discovery is not configured or cannot be reached, the
// API server itself. Translation reads both the same way. The agent
// rebuilds the whole configuration (debounced) when a Service or policy
// changes, and updates only the affected ClusterLoadAssignments when a
// Service's endpoints change. While its source is unreachable the last
// published configuration keeps being served.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Publisher receives the agent's configuration; *server.Server is one.
type Publisher interface {
	// Publish replaces the whole configuration.
	Publish(*xds.Resources)
	// PublishEndpoints updates some ClusterLoadAssignments only.
	PublishEndpoints([]*endpointv3.ClusterLoadAssignment)
}

// TranslateFunc has the signature of xds.Translate.
type TranslateFunc func(xds.Inputs, xds.Mode) (*xds.Resources, []error)

// Options configure an Agent.
type Options struct {
	// Sources reach the API server: the only source without Discovery, the
	// fallback with it.
	Sources kubewatch.Sources
	// Namespaces limits what is watched; all namespaces when empty.
	Namespaces []string
	// Discovery, when set, is where the cluster state comes from.
	Discovery *DiscoveryOptions
	Mode      xds.Mode
	// Locality is where the agent's pod runs: its node (from the downward
	// API) and, when known, its zone. An empty zone is learned from
	// discovery, which reads the Node's labels.
	Locality  xds.Locality
	Publisher Publisher
	// Debounce groups Service and policy changes arriving together into one
	// rebuild; 100ms when zero. A steady stream of changes still rebuilds
	// at least every ten debounce periods.
	Debounce time.Duration
	// Translate is xds.Translate when nil.
	Translate TranslateFunc
	Logger    *slog.Logger
	// Registerer receives the agent's metrics when set.
	Registerer prometheus.Registerer
	// Served, when set, tells the state of the xDS clients the agent
	// serves, for its report (Status, and discovery's records).
	Served Served
}

// source is where the cluster state comes from.
type source interface {
	// Inputs lists everything, for a full translation.
	Inputs() xds.Inputs
	// Endpoints returns one Service ("namespace/name") and its slices.
	Endpoints(key string) (*corev1.Service, []*discoveryv1.EndpointSlice, bool)
	name() string
}

// kubeSource is the API server, watched directly.
type kubeSource struct{ *kubewatch.Watcher }

func (k kubeSource) Endpoints(key string) (*corev1.Service, []*discoveryv1.EndpointSlice, bool) {
	svc, slices, _, ok := k.Service(key)
	return svc, slices, ok
}

func (kubeSource) name() string { return "API server" }

// Agent turns cluster state into published xDS configuration.
type Agent struct {
	opts    Options
	log     *slog.Logger
	kick    chan struct{}
	metrics *metrics
	disc    *discoverySource // nil without Discovery
	// statusChanged is signalled when the source changes, for the report.
	statusChanged chan struct{}

	mu        sync.Mutex   // serialises rebuilds and endpoint updates
	cur       source       // the source published from; nil until one synced
	rebuiltAt time.Time    // when the last rebuild read the source
	local     xds.Locality // where the pod runs, a translation input
}

// New checks the options; Run starts the agent.
func New(o Options) (*Agent, error) {
	if o.Sources.Services == nil || o.Sources.EndpointSlices == nil || o.Sources.Policies == nil {
		return nil, errors.New("agent: Sources needs Services, EndpointSlices and TrafficPolicies")
	}
	if o.Publisher == nil {
		return nil, errors.New("agent: no Publisher")
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Translate == nil {
		o.Translate = xds.Translate
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &Agent{opts: o, log: o.Logger, kick: make(chan struct{}, 1), local: o.Locality, statusChanged: make(chan struct{}, 1)}
	var err error
	if a.metrics, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}
	a.reportLocality()
	if o.Locality.Node == "" {
		a.log.Warn("the node this pod runs on is unknown: Services with internalTrafficPolicy Local get no endpoints, and endpoints on the same node are not preferred")
	}
	switch {
	case o.Locality.Zone != "":
	case o.Discovery != nil && o.Locality.Node != "":
		// Discovery tells the zone; setZone reports what it says.
	default:
		a.log.Warn("the zone this pod runs in is unknown (no topology.kubernetes.io/zone label on the pod, and no discovery to read its Node's): endpoints in the same zone are not preferred")
	}
	if o.Discovery != nil {
		if a.disc, err = newDiscoverySource(*o.Discovery, o.Namespaces, a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// newKubeSource builds the informers of the watched namespaces.
func (a *Agent) newKubeSource() (kubeSource, error) {
	var src kubeSource
	w, err := kubewatch.New(a.opts.Sources, a.opts.Namespaces, kubewatch.Handler{
		ServiceChanged:   func(string) { a.scheduleRebuild() },
		EndpointsChanged: func(key string) { a.updateEndpoints(src, key) },
		WatchError: func(what, ns string, err error) {
			a.metrics.watchErrors.Inc()
			if ns == "" {
				ns = "all namespaces"
			}
			a.log.Warn("watch failed; serving the last configuration and retrying with backoff",
				"resource", what, "namespace", ns, "error", err)
		},
		Unserved: kubewatch.LogUnserved(a.log),
	})
	src.Watcher = w
	return src, err
}

// Run keeps the configuration current until ctx ends: from discovery when
// it is configured and reachable, else from the API server.
func (a *Agent) Run(ctx context.Context) error {
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); a.loop(ctx) }()
	defer func() { <-loopDone }()
	if a.disc != nil {
		return a.runWithDiscovery(ctx)
	}
	kube, err := a.newKubeSource()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { defer close(done); kube.Run(ctx) }()
	defer func() { <-done }()
	start := time.Now()
	if err := kube.WaitForSync(ctx); err != nil {
		return err
	}
	a.use(kube, start)
	<-ctx.Done()
	return nil
}

// runWithDiscovery follows discovery while it answers. When it has not
// answered for FallbackAfter (at start, or after losing it), the API server
// is watched for the same scope until discovery is back.
func (a *Agent) runWithDiscovery(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.disc.run(ctx) })

	start := time.Now()
	unservedSince := start // when discovery last stopped serving this agent
	fallback := time.NewTimer(a.disc.opts.FallbackAfter)
	defer fallback.Stop()
	var (
		kube       *kubeSource
		stopKube   context.CancelFunc
		kubeSynced = make(chan *kubeSource, 1)
	)
	stopFallback := func() {
		if stopKube != nil {
			stopKube()
			stopKube, kube = nil, nil
			a.log.Info("stopped watching the API server")
		}
	}
	defer stopFallback()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.disc.changed:
			if a.disc.isUp() {
				fallback.Stop()
				if a.current() != source(a.disc) {
					a.use(a.disc, start)
				}
				stopFallback()
			} else if kube == nil {
				a.log.Warn("discovery unreachable; serving the last configuration", "fallbackAfter", a.disc.opts.FallbackAfter)
				unservedSince = time.Now()
				fallback.Reset(a.disc.opts.FallbackAfter)
			}
		case <-fallback.C:
			if a.disc.isUp() || kube != nil {
				continue
			}
			// Connected but not answered yet: discovery is reachable and
			// busy, as when a whole fleet starts or reconnects at once.
			// Falling back then would bring that fleet onto the API server;
			// wait longer.
			if a.disc.connected() && time.Since(unservedSince) < slowDiscoveryPatience*a.disc.opts.FallbackAfter {
				fallback.Reset(a.disc.opts.FallbackAfter)
				continue
			}
			k, err := a.newKubeSource()
			if err != nil {
				return err
			}
			a.log.Warn("discovery unreachable: watching the API server until it is back", "namespaces", a.opts.Namespaces)
			a.metrics.fallbacks.Inc()
			a.disc.countFallback()
			kctx, cancel := context.WithCancel(ctx)
			kube, stopKube = &k, cancel
			wg.Go(func() { k.Run(kctx) })
			wg.Go(func() {
				if k.WaitForSync(kctx) == nil {
					select {
					case kubeSynced <- &k:
					case <-kctx.Done():
					}
				}
			})
		case k := <-kubeSynced:
			if k == kube && !a.disc.isUp() {
				a.use(*k, start)
			}
		}
	}
}

// slowDiscoveryPatience is how many FallbackAfter periods an agent waits
// for discovery's first answer on an open connection before watching the
// API server anyway.
const slowDiscoveryPatience = 6

// use makes src the source published from and publishes all of it.
func (a *Agent) use(src source, start time.Time) {
	a.mu.Lock()
	first := a.cur == nil
	a.cur = src
	a.rebuildLocked()
	a.mu.Unlock()
	releaseMemory()
	a.metrics.synced.Set(1)
	a.metrics.fromDiscovery.Set(0)
	if src == source(a.disc) {
		a.metrics.fromDiscovery.Set(1)
	}
	signal(a.statusChanged)
	if first {
		a.metrics.publishedAt.SetToCurrentTime()
		a.log.Info("configuration published", "source", src.name(), "after", time.Since(start).Round(time.Millisecond))
	} else {
		a.log.Info("configuration source changed", "source", src.name())
	}
}

func (a *Agent) current() source {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// Synced reports whether a first configuration was published.
func (a *Agent) Synced() bool { return a.current() != nil }

// FromDiscovery reports whether the configuration comes from discovery.
func (a *Agent) FromDiscovery() bool {
	c := a.current()
	return c != nil && c == source(a.disc)
}

// Subscribe sets the Services ("namespace/name") an on-demand agent
// follows; see DiscoveryOptions.OnDemand.
func (a *Agent) Subscribe(keys []string) {
	if a.disc != nil {
		a.disc.subscribe(keys)
	}
}

// SubscribeListeners subscribes an on-demand agent to the Services whose
// listeners ("<service>.<namespace>.svc.cluster.local:<port>") a proxyless
// app asks for; other names are ignored.
func (a *Agent) SubscribeListeners(names []string) {
	var keys []string
	for _, n := range names {
		if ns, name, ok := xds.ServiceOfHost(n); ok {
			keys = append(keys, ns+"/"+name)
		}
	}
	a.Subscribe(keys)
}

// rebuildFor schedules a rebuild for a change of src when it is the
// current source; a source becoming current is rebuilt from in full anyway,
// with every change it already holds.
func (a *Agent) rebuildFor(src source) {
	if a.current() == src {
		a.scheduleRebuild()
	}
}

func (a *Agent) scheduleRebuild() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// loop runs the debounced full rebuilds.
func (a *Agent) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	<-timer.C
	var pendingSince, lastKick time.Time
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-a.kick:
			now := time.Now()
			lastKick = now
			if pendingSince.IsZero() {
				pendingSince = now
			}
			wait := a.opts.Debounce
			if limit := pendingSince.Add(10 * a.opts.Debounce).Sub(now); limit < wait {
				wait = max(limit, 0)
			}
			timer.Reset(wait)
		case <-timer.C:
			pendingSince = time.Time{}
			a.mu.Lock()
			// A change seen before the last rebuild read the source is in it.
			rebuilt := a.cur != nil && lastKick.After(a.rebuiltAt)
			if rebuilt {
				a.rebuildLocked()
			}
			a.mu.Unlock()
			if rebuilt {
				releaseMemory()
			}
		}
	}
}

// rebuildLocked translates everything and publishes it. Must hold a.mu.
func (a *Agent) rebuildLocked() {
	start := time.Now()
	a.rebuiltAt = start
	in := a.cur.Inputs()
	in.Local = a.local
	res, errs := a.opts.Translate(in, a.opts.Mode)
	for _, err := range errs {
		a.log.Warn("object not translated", "error", err)
	}
	a.metrics.translateErrors.Add(float64(len(errs)))
	if res != nil {
		a.opts.Publisher.Publish(res)
	}
	a.metrics.rebuilds.Inc()
	a.metrics.rebuildSeconds.Observe(time.Since(start).Seconds())
	a.log.Debug("configuration rebuilt", "services", len(in.Services), "endpointSlices", len(in.EndpointSlices),
		"policies", len(in.Policies), "took", time.Since(start))
}

// releaseMemory hands the heap a full rebuild left behind back to the
// system. A rebuild needs several times the memory of what it publishes
// (the objects, the translated resources, their wire form), and the Go
// runtime would otherwise keep most of it for minutes. An agent runs in
// every pod, and full rebuilds are rare (a Service or policy changing), so
// the one extra collection is worth it.
func releaseMemory() { debug.FreeOSMemory() }

// updateEndpoints publishes the ClusterLoadAssignments of one Service,
// given as "namespace/name", from src when it is the current source.
func (a *Agent) updateEndpoints(src source, key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil || a.cur != src {
		return
	}
	svc, slices, ok := src.Endpoints(key)
	if !ok { // no Service (yet): its rebuild will bring the endpoints
		return
	}
	if xds.EndpointsChangeListeners(svc, a.opts.Mode) {
		// A headless Service's listener chains list its pod addresses, so
		// its endpoints live in the listener: only a rebuild refreshes them.
		a.scheduleRebuild()
		return
	}
	a.opts.Publisher.PublishEndpoints(xds.ServiceEndpoints(svc, slices, a.local, a.opts.Mode))
	a.metrics.endpointUpdates.Inc()
}

// Locality is where the agent takes its pod to run.
func (a *Agent) Locality() xds.Locality {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.local
}

// setZone records the zone discovery read from the pod's Node; a change
// rebuilds the configuration. A zone given in Options is kept.
func (a *Agent) setZone(zone string, nodeFound bool) {
	a.mu.Lock()
	if a.opts.Locality.Zone != "" || a.local.Zone == zone {
		a.mu.Unlock()
		if !nodeFound {
			a.log.Warn("discovery knows no Node of this name; the zone stays unknown", "node", a.opts.Locality.Node)
		}
		return
	}
	old := a.local.Zone
	a.local.Zone = zone
	a.mu.Unlock()
	a.reportLocality()
	switch {
	case zone == "":
		a.log.Warn("the pod's Node has no topology.kubernetes.io/zone label: endpoints in the same zone are not preferred", "node", a.opts.Locality.Node, "was", old)
	default:
		a.log.Info("zone learned from discovery", "node", a.opts.Locality.Node, "zone", zone)
	}
	a.scheduleRebuild()
}

func (a *Agent) reportLocality() {
	l := a.Locality()
	known := func(s string) float64 {
		if s == "" {
			return 0
		}
		return 1
	}
	a.metrics.nodeKnown.Set(known(l.Node))
	a.metrics.zoneKnown.Set(known(l.Zone))
}
