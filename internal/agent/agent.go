// Package agent keeps the xDS configuration in step with the cluster: it
// watches Services, EndpointSlices and TrafficPolicies, rebuilds the whole
// configuration (debounced) when a Service or policy changes, and updates
// only the affected ClusterLoadAssignments when an EndpointSlice changes.
// When the API server goes away the informers retry with backoff while the
// last published configuration keeps being served.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
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
	Sources Sources
	// Namespaces limits what is watched; all namespaces when empty.
	Namespaces []string
	Mode       xds.Mode
	Publisher  Publisher
	// Debounce groups Service and policy changes arriving together into one
	// rebuild; 100ms when zero. A steady stream of changes still rebuilds
	// at least every ten debounce periods.
	Debounce time.Duration
	// Translate is xds.Translate when nil.
	Translate TranslateFunc
	Logger    *slog.Logger
	// Registerer receives the agent's metrics when set.
	Registerer prometheus.Registerer
}

// Agent turns cluster state into published xDS configuration.
type Agent struct {
	opts    Options
	log     *slog.Logger
	sets    map[string]*informerSet // by namespace; "" when watching all
	kick    chan struct{}
	metrics *metrics

	mu        sync.Mutex // serialises rebuilds and endpoint updates
	synced    bool
	rebuiltAt time.Time // when the last rebuild read the caches
}

// informerSet holds the informers of one watched namespace (or of all).
type informerSet struct {
	factory  informers.SharedInformerFactory
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	policies cache.SharedIndexInformer
	// handlers have synced once the initial objects were delivered to them
	handlers []cache.ResourceEventHandlerRegistration
}

const serviceIndex = "service"

// sliceService indexes EndpointSlices by the "namespace/name" of their Service.
func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name, ok := s.Labels[discoveryv1.LabelServiceName]
	if !ok {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// New builds the informers; Run starts them.
func New(o Options) (*Agent, error) {
	if o.Sources.Kube == nil || o.Sources.Policies == nil {
		return nil, errors.New("agent: Sources needs both a Kubernetes client and a TrafficPolicy source")
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
	a := &Agent{opts: o, log: o.Logger, sets: map[string]*informerSet{}, kick: make(chan struct{}, 1)}
	var err error
	if a.metrics, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		if _, dup := a.sets[ns]; dup {
			continue
		}
		set, err := a.newInformerSet(ns)
		if err != nil {
			return nil, err
		}
		a.sets[ns] = set
	}
	return a, nil
}

func (a *Agent) newInformerSet(ns string) (*informerSet, error) {
	f := informers.NewSharedInformerFactoryWithOptions(a.opts.Sources.Kube, 0,
		informers.WithNamespace(ns), informers.WithTransform(strip))
	set := &informerSet{
		factory:  f,
		services: f.Core().V1().Services().Informer(),
		slices:   f.Discovery().V1().EndpointSlices().Informer(),
		policies: cache.NewSharedIndexInformerWithOptions(a.opts.Sources.Policies(ns), &v1alpha1.TrafficPolicy{},
			cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}}),
	}
	if err := set.policies.SetTransform(strip); err != nil {
		return nil, err
	}
	if err := set.slices.AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return nil, err
	}
	for what, inf := range map[string]cache.SharedIndexInformer{"Services": set.services, "EndpointSlices": set.slices, "TrafficPolicies": set.policies} {
		if err := inf.SetWatchErrorHandlerWithContext(a.watchError(what, ns)); err != nil {
			return nil, err
		}
	}
	rebuild := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.scheduleRebuild() },
		UpdateFunc: func(old, cur any) { a.objectUpdated(old, cur) },
		DeleteFunc: func(any) { a.scheduleRebuild() },
	}
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		set.services: rebuild,
		set.policies: rebuild,
		set.slices: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.sliceChanged(nil, obj) },
			UpdateFunc: a.sliceChanged,
			DeleteFunc: func(obj any) { a.sliceChanged(obj, nil) },
		},
	} {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return nil, err
		}
		set.handlers = append(set.handlers, reg)
	}
	return set, nil
}

// watchError reports a failed list or watch; the reflector then retries
// with backoff on its own.
func (a *Agent) watchError(what, ns string) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		a.metrics.watchErrors.Inc()
		if ns == "" {
			ns = "all namespaces"
		}
		a.log.Warn("watch failed; serving the last configuration and retrying with backoff",
			"resource", what, "namespace", ns, "error", err)
	}
}

// Run starts the informers, publishes the first configuration once they
// have synced, and keeps it current until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var synced []cache.InformerSynced
	var wg sync.WaitGroup
	for _, set := range a.sets {
		set.factory.Start(ctx.Done())
		wg.Go(func() { set.policies.RunWithContext(ctx) })
		for _, h := range set.handlers {
			synced = append(synced, h.HasSynced)
		}
	}
	defer func() {
		for _, set := range a.sets {
			set.factory.Shutdown()
		}
		wg.Wait()
	}()
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); a.loop(ctx) }()
	defer func() { <-loopDone }()

	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("informers did not sync: %w", ctx.Err())
	}
	// Marking synced and publishing under one lock: an EndpointSlice event
	// handled before this point was skipped, but its object is already in
	// the store this first rebuild lists. The handlers have seen every
	// initial object, so the rebuilds they asked for are covered too.
	a.mu.Lock()
	a.synced = true
	a.rebuildLocked()
	a.mu.Unlock()
	a.metrics.synced.Set(1)
	a.log.Info("informers synced; configuration published", "after", time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	return nil
}

// Synced reports whether the informers have synced and the first
// configuration was published.
func (a *Agent) Synced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.synced
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
			// A change seen before the last rebuild read the caches is in it.
			if a.synced && lastKick.After(a.rebuiltAt) {
				a.rebuildLocked()
			}
			a.mu.Unlock()
		}
	}
}

// objectUpdated rebuilds for a Service or policy update that changed what
// translation reads; status and metadata churn is ignored.
func (a *Agent) objectUpdated(old, cur any) {
	switch o := old.(type) {
	case *corev1.Service:
		if c, ok := cur.(*corev1.Service); ok && reflect.DeepEqual(o.Spec, c.Spec) && reflect.DeepEqual(o.Labels, c.Labels) {
			return
		}
	case *v1alpha1.TrafficPolicy:
		if c, ok := cur.(*v1alpha1.TrafficPolicy); ok && reflect.DeepEqual(o.Spec, c.Spec) {
			return
		}
	}
	a.scheduleRebuild()
}

// rebuildLocked translates everything and publishes it. Must hold a.mu.
func (a *Agent) rebuildLocked() {
	start := time.Now()
	a.rebuiltAt = start
	var in xds.Inputs
	for _, set := range a.sets {
		for _, o := range set.services.GetStore().List() {
			in.Services = append(in.Services, o.(*corev1.Service))
		}
		for _, o := range set.slices.GetStore().List() {
			in.EndpointSlices = append(in.EndpointSlices, o.(*discoveryv1.EndpointSlice))
		}
		for _, o := range set.policies.GetStore().List() {
			in.Policies = append(in.Policies, o.(*v1alpha1.TrafficPolicy))
		}
	}
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

// sliceChanged handles an EndpointSlice added (old nil), updated or
// deleted (cur nil): the endpoints of its Service are recomputed.
func (a *Agent) sliceChanged(old, cur any) {
	o, c := asSlice(old), asSlice(cur)
	if o != nil && c != nil && o.AddressType == c.AddressType &&
		reflect.DeepEqual(o.Endpoints, c.Endpoints) && reflect.DeepEqual(o.Ports, c.Ports) &&
		reflect.DeepEqual(o.Labels, c.Labels) {
		return
	}
	keys := map[string]bool{}
	for _, s := range []*discoveryv1.EndpointSlice{o, c} {
		if s == nil {
			continue
		}
		if ks, _ := sliceService(s); len(ks) == 1 {
			keys[ks[0]] = true
		}
	}
	for key := range keys {
		a.updateEndpoints(key)
	}
}

func asSlice(obj any) *discoveryv1.EndpointSlice {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, _ := obj.(*discoveryv1.EndpointSlice)
	return s
}

// updateEndpoints publishes the ClusterLoadAssignments of one Service,
// given as "namespace/name", from its current slices.
func (a *Agent) updateEndpoints(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced {
		return
	}
	set := a.setFor(key)
	if set == nil {
		return
	}
	obj, ok, _ := set.services.GetIndexer().GetByKey(key)
	if !ok { // no Service (yet): its rebuild will bring the endpoints
		return
	}
	if xds.EndpointsChangeListeners(obj.(*corev1.Service), a.opts.Mode) {
		// A headless Service's listener chains list its pod addresses, so
		// its endpoints live in the listener: only a rebuild refreshes them.
		a.scheduleRebuild()
		return
	}
	objs, err := set.slices.GetIndexer().ByIndex(serviceIndex, key)
	if err != nil {
		a.log.Error("listing EndpointSlices", "service", key, "error", err)
		return
	}
	slices := make([]*discoveryv1.EndpointSlice, len(objs))
	for i, o := range objs {
		slices[i] = o.(*discoveryv1.EndpointSlice)
	}
	a.opts.Publisher.PublishEndpoints(xds.ServiceEndpoints(obj.(*corev1.Service), slices, a.opts.Mode))
	a.metrics.endpointUpdates.Inc()
}

// setFor returns the informers watching the namespace of key.
func (a *Agent) setFor(key string) *informerSet {
	if set, ok := a.sets[metav1.NamespaceAll]; ok {
		return set
	}
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	return a.sets[ns]
}
