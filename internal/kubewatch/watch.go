// Package kubewatch list-watches the Services, EndpointSlices,
// TrafficPolicies and Gateway API routes of some namespaces (or all),
// caching only what translation reads, and tells its handler which Service
// changed and how.
// Discovery watches the whole cluster through it once; an agent watches
// through it only when discovery is unreachable.
package kubewatch

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Handler receives what changed, by Service key ("namespace/name"). Events
// arrive before HasSynced too; a handler that builds from the caches waits
// for it and then reads everything once.
type Handler struct {
	// ServiceChanged: a Service was added, removed or changed in what
	// translation reads, or a TrafficPolicy targeting it was, or a route
	// naming it as a parent.
	ServiceChanged func(key string)
	// EndpointsChanged: the EndpointSlices of a Service changed.
	EndpointsChanged func(key string)
	// WatchError: a list or watch failed; it is retried with backoff.
	WatchError func(resource, namespace string, err error)
	// Unserved: the API server does not serve a resource that may be
	// missing (the Gateway API routes, whose CRDs may not be installed),
	// or refuses it (err); it is watched as empty and asked for again
	// until it is served, when Unserved hears a nil error.
	Unserved func(resource, namespace string, err error)
}

// Watcher holds the informers of the watched namespaces.
type Watcher struct {
	h    Handler
	sets map[string]*informerSet // by namespace; "" when watching all
	// routeIndex adds the index of routes by parent on the first call of
	// Routes: discovery's. An agent never asks, and keeps no index.
	routeIndex sync.Once
}

type informerSet struct {
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	policies cache.SharedIndexInformer
	// routes are the HTTPRoute and GRPCRoute informers, when watched.
	httpRoutes, grpcRoutes cache.SharedIndexInformer
	// handlers have synced once the initial objects were delivered to them
	handlers []cache.ResourceEventHandlerRegistration
}

const (
	serviceIndex = "service" // slices by their Service's key
	targetIndex  = "target"  // policies by their target's key
	parentIndex  = "parent"  // routes by their Service parents' keys
)

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

func policyTarget(obj any) ([]string, error) {
	if p := asPolicy(obj); p != nil {
		return []string{p.Namespace + "/" + p.Spec.TargetRef.Name}, nil
	}
	return nil, nil
}

// routeParents indexes routes by the "namespace/name" of each Service they
// name as a parent.
func routeParents(obj any) ([]string, error) {
	switch r := unwrap(obj).(type) {
	case *gatewayv1.HTTPRoute:
		return xds.ServiceParents(r.Namespace, r.Spec.ParentRefs), nil
	case *gatewayv1.GRPCRoute:
		return xds.ServiceParents(r.Namespace, r.Spec.ParentRefs), nil
	}
	return nil, nil
}

// New builds the informers of namespaces (all when empty); Run starts them.
func New(src Sources, namespaces []string, h Handler) (*Watcher, error) {
	if src.Services == nil || src.EndpointSlices == nil || src.Policies == nil {
		return nil, errors.New("kubewatch: Sources needs Services, EndpointSlices and TrafficPolicies")
	}
	for _, f := range []*func(string){&h.ServiceChanged, &h.EndpointsChanged} {
		if *f == nil {
			*f = func(string) {}
		}
	}
	if h.WatchError == nil {
		h.WatchError = func(string, string, error) {}
	}
	if h.Unserved == nil {
		h.Unserved = func(string, string, error) {}
	}
	w := &Watcher{h: h, sets: map[string]*informerSet{}}
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		if _, dup := w.sets[ns]; dup {
			continue
		}
		set, err := w.newInformerSet(src, ns)
		if err != nil {
			return nil, err
		}
		w.sets[ns] = set
	}
	return w, nil
}

func (w *Watcher) newInformerSet(src Sources, ns string) (*informerSet, error) {
	set := &informerSet{
		services: cache.NewSharedIndexInformerWithOptions(src.Services(ns), &corev1.Service{},
			cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}}),
		slices: cache.NewSharedIndexInformerWithOptions(src.EndpointSlices(ns), &discoveryv1.EndpointSlice{},
			cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}}),
		policies: cache.NewSharedIndexInformerWithOptions(src.Policies(ns), &v1alpha1.TrafficPolicy{},
			cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, targetIndex: policyTarget}}),
	}
	for _, inf := range []cache.SharedIndexInformer{set.services, set.slices, set.policies} {
		if err := inf.SetTransform(strip); err != nil {
			return nil, err
		}
	}
	if err := set.slices.AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return nil, err
	}
	watched := map[string]cache.SharedIndexInformer{"Services": set.services, "EndpointSlices": set.slices, "TrafficPolicies": set.policies}
	routes := func(what string, lw func(string) cache.ListerWatcher, obj runtime.Object, newList func() runtime.Object) (cache.SharedIndexInformer, error) {
		if lw == nil {
			return nil, nil
		}
		opt := newOptional(lw(ns), newList, func(err error) { w.h.Unserved(what, ns, err) })
		// No index yet (see Watcher.routeIndex), but a map to add it to:
		// client-go cannot add indexers to a nil one.
		inf := cache.NewSharedIndexInformerWithOptions(opt, obj, cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}})
		if err := inf.SetTransform(strip); err != nil {
			return nil, err
		}
		watched[what] = inf
		return inf, nil
	}
	var err error
	if set.httpRoutes, err = routes("HTTPRoutes", src.HTTPRoutes, &gatewayv1.HTTPRoute{}, func() runtime.Object { return &gatewayv1.HTTPRouteList{} }); err != nil {
		return nil, err
	}
	if set.grpcRoutes, err = routes("GRPCRoutes", src.GRPCRoutes, &gatewayv1.GRPCRoute{}, func() runtime.Object { return &gatewayv1.GRPCRouteList{} }); err != nil {
		return nil, err
	}
	for what, inf := range watched {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			w.h.WatchError(what, ns, err)
		}); err != nil {
			return nil, err
		}
	}
	handlers := map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		set.services: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.serviceChanged(nil, obj) },
			UpdateFunc: w.serviceChanged,
			DeleteFunc: func(obj any) { w.serviceChanged(obj, nil) },
		},
		set.policies: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.policyChanged(nil, obj) },
			UpdateFunc: w.policyChanged,
			DeleteFunc: func(obj any) { w.policyChanged(obj, nil) },
		},
		set.slices: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.sliceChanged(nil, obj) },
			UpdateFunc: w.sliceChanged,
			DeleteFunc: func(obj any) { w.sliceChanged(obj, nil) },
		},
	}
	for _, inf := range []cache.SharedIndexInformer{set.httpRoutes, set.grpcRoutes} {
		if inf != nil {
			handlers[inf] = cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { w.routeChanged(nil, obj) },
				UpdateFunc: w.routeChanged,
				DeleteFunc: func(obj any) { w.routeChanged(obj, nil) },
			}
		}
	}
	for inf, h := range handlers {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return nil, err
		}
		set.handlers = append(set.handlers, reg)
	}
	return set, nil
}

// Run starts the informers and returns when ctx ends and they stopped.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, set := range w.sets {
		for _, inf := range []cache.SharedIndexInformer{set.services, set.slices, set.policies, set.httpRoutes, set.grpcRoutes} {
			if inf != nil {
				wg.Go(func() { inf.RunWithContext(ctx) })
			}
		}
	}
	wg.Wait()
}

// WaitForSync waits until every informer has delivered its initial
// objects to the handlers; false when ctx ended first.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	var synced []cache.InformerSynced
	for _, set := range w.sets {
		for _, h := range set.handlers {
			synced = append(synced, h.HasSynced)
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("informers did not sync: %w", ctx.Err())
	}
	return nil
}

// Inputs lists every cached object, for a full translation.
func (w *Watcher) Inputs() xds.Inputs {
	var in xds.Inputs
	for _, set := range w.sets {
		for _, o := range set.services.GetStore().List() {
			in.Services = append(in.Services, o.(*corev1.Service))
		}
		for _, o := range set.slices.GetStore().List() {
			in.EndpointSlices = append(in.EndpointSlices, o.(*discoveryv1.EndpointSlice))
		}
		for _, o := range set.policies.GetStore().List() {
			in.Policies = append(in.Policies, o.(*v1alpha1.TrafficPolicy))
		}
		if set.httpRoutes != nil {
			for _, o := range set.httpRoutes.GetStore().List() {
				in.HTTPRoutes = append(in.HTTPRoutes, o.(*gatewayv1.HTTPRoute))
			}
		}
		if set.grpcRoutes != nil {
			for _, o := range set.grpcRoutes.GetStore().List() {
				in.GRPCRoutes = append(in.GRPCRoutes, o.(*gatewayv1.GRPCRoute))
			}
		}
	}
	return in
}

// Routes returns the cached routes that name the Service key
// ("namespace/name") as a parent, from every watched namespace: consumer
// routes live in their clients' namespaces.
func (w *Watcher) Routes(key string) (http []*gatewayv1.HTTPRoute, grpc []*gatewayv1.GRPCRoute) {
	w.routeIndex.Do(func() {
		for _, set := range w.sets {
			for _, inf := range []cache.SharedIndexInformer{set.httpRoutes, set.grpcRoutes} {
				if inf != nil {
					// Fails only on a stopped informer, which has nothing to index.
					_ = inf.AddIndexers(cache.Indexers{parentIndex: routeParents})
				}
			}
		}
	})
	for _, set := range w.sets {
		if set.httpRoutes != nil {
			objs, _ := set.httpRoutes.GetIndexer().ByIndex(parentIndex, key)
			for _, o := range objs {
				http = append(http, o.(*gatewayv1.HTTPRoute))
			}
		}
		if set.grpcRoutes != nil {
			objs, _ := set.grpcRoutes.GetIndexer().ByIndex(parentIndex, key)
			for _, o := range objs {
				grpc = append(grpc, o.(*gatewayv1.GRPCRoute))
			}
		}
	}
	return http, grpc
}

// ServiceKeys lists the keys of every cached Service.
func (w *Watcher) ServiceKeys() []string {
	var keys []string
	for _, set := range w.sets {
		keys = append(keys, set.services.GetStore().ListKeys()...)
	}
	return keys
}

// Service returns a cached Service by key, its EndpointSlices and the
// policies targeting it; ok is false when there is no such Service.
func (w *Watcher) Service(key string) (svc *corev1.Service, slices []*discoveryv1.EndpointSlice, policies []*v1alpha1.TrafficPolicy, ok bool) {
	set := w.setFor(key)
	if set == nil {
		return nil, nil, nil, false
	}
	obj, ok, _ := set.services.GetIndexer().GetByKey(key)
	if !ok {
		return nil, nil, nil, false
	}
	objs, _ := set.slices.GetIndexer().ByIndex(serviceIndex, key)
	for _, o := range objs {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	objs, _ = set.policies.GetIndexer().ByIndex(targetIndex, key)
	for _, o := range objs {
		policies = append(policies, o.(*v1alpha1.TrafficPolicy))
	}
	return obj.(*corev1.Service), slices, policies, true
}

// setFor returns the informers watching the namespace of key.
func (w *Watcher) setFor(key string) *informerSet {
	if set, ok := w.sets[metav1.NamespaceAll]; ok {
		return set
	}
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	return w.sets[ns]
}

// serviceChanged reports a Service added (old nil), removed (cur nil) or
// updated in what translation reads; status and metadata churn is ignored.
func (w *Watcher) serviceChanged(old, cur any) {
	o, c := asService(old), asService(cur)
	if o != nil && c != nil && reflect.DeepEqual(o.Spec, c.Spec) && reflect.DeepEqual(o.Labels, c.Labels) {
		return
	}
	for _, s := range []*corev1.Service{o, c} {
		if s != nil {
			w.h.ServiceChanged(s.Namespace + "/" + s.Name)
			return
		}
	}
}

// policyChanged reports the Services a policy targeted and targets.
func (w *Watcher) policyChanged(old, cur any) {
	o, c := asPolicy(old), asPolicy(cur)
	if o != nil && c != nil && reflect.DeepEqual(o.Spec, c.Spec) && o.CreationTimestamp.Equal(&c.CreationTimestamp) {
		return
	}
	keys := map[string]bool{}
	for _, p := range []*v1alpha1.TrafficPolicy{o, c} {
		if p != nil {
			keys[p.Namespace+"/"+p.Spec.TargetRef.Name] = true
		}
	}
	for k := range keys {
		w.h.ServiceChanged(k)
	}
}

// routeChanged reports the parents a route named and names; status
// changes (the injector writes them) are ignored.
func (w *Watcher) routeChanged(old, cur any) {
	if o, c := routeSpec(old), routeSpec(cur); o != nil && c != nil && reflect.DeepEqual(o, c) {
		return
	}
	keys := map[string]bool{}
	for _, r := range []any{old, cur} {
		if r == nil {
			continue
		}
		parents, _ := routeParents(r)
		for _, k := range parents {
			keys[k] = true
		}
	}
	for k := range keys {
		w.h.ServiceChanged(k)
	}
}

// routeSpec is what translation reads of a route: its spec and creation
// time (the older of two routes wins ties).
func routeSpec(obj any) any {
	switch r := unwrap(obj).(type) {
	case *gatewayv1.HTTPRoute:
		return []any{r.Spec, r.CreationTimestamp.Unix()}
	case *gatewayv1.GRPCRoute:
		return []any{r.Spec, r.CreationTimestamp.Unix()}
	}
	return nil
}

// sliceChanged reports the Services whose endpoints an EndpointSlice
// added (old nil), updated or deleted (cur nil) changed.
func (w *Watcher) sliceChanged(old, cur any) {
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
		w.h.EndpointsChanged(key)
	}
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func asSlice(obj any) *discoveryv1.EndpointSlice {
	s, _ := unwrap(obj).(*discoveryv1.EndpointSlice)
	return s
}

func asService(obj any) *corev1.Service {
	s, _ := unwrap(obj).(*corev1.Service)
	return s
}

func asPolicy(obj any) *v1alpha1.TrafficPolicy {
	p, _ := unwrap(obj).(*v1alpha1.TrafficPolicy)
	return p
}
