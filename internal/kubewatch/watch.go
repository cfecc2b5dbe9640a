// Package kubewatch list-watches the Services, EndpointSlices and
// TrafficPolicies of some namespaces (or all), caching only what
// translation reads, and tells its handler which Service changed and how.
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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Handler receives what changed, by Service key ("namespace/name"). Events
// arrive before HasSynced too; a handler that builds from the caches waits
// for it and then reads everything once.
type Handler struct {
	// ServiceChanged: a Service was added, removed or changed in what
	// translation reads, or a TrafficPolicy targeting it was.
	ServiceChanged func(key string)
	// EndpointsChanged: the EndpointSlices of a Service changed.
	EndpointsChanged func(key string)
	// WatchError: a list or watch failed; it is retried with backoff.
	WatchError func(resource, namespace string, err error)
}

// Watcher holds the informers of the watched namespaces.
type Watcher struct {
	h    Handler
	sets map[string]*informerSet // by namespace; "" when watching all
}

type informerSet struct {
	factory  informers.SharedInformerFactory
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	policies cache.SharedIndexInformer
	// handlers have synced once the initial objects were delivered to them
	handlers []cache.ResourceEventHandlerRegistration
}

const (
	serviceIndex = "service" // slices by their Service's key
	targetIndex  = "target"  // policies by their target's key
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

// New builds the informers of namespaces (all when empty); Run starts them.
func New(src Sources, namespaces []string, h Handler) (*Watcher, error) {
	if src.Kube == nil || src.Policies == nil {
		return nil, errors.New("kubewatch: Sources needs both a Kubernetes client and a TrafficPolicy source")
	}
	for _, f := range []*func(string){&h.ServiceChanged, &h.EndpointsChanged} {
		if *f == nil {
			*f = func(string) {}
		}
	}
	if h.WatchError == nil {
		h.WatchError = func(string, string, error) {}
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
	f := informers.NewSharedInformerFactoryWithOptions(src.Kube, 0,
		informers.WithNamespace(ns), informers.WithTransform(strip))
	set := &informerSet{
		factory:  f,
		services: f.Core().V1().Services().Informer(),
		slices:   f.Discovery().V1().EndpointSlices().Informer(),
		policies: cache.NewSharedIndexInformerWithOptions(src.Policies(ns), &v1alpha1.TrafficPolicy{},
			cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, targetIndex: policyTarget}}),
	}
	if err := set.policies.SetTransform(strip); err != nil {
		return nil, err
	}
	if err := set.slices.AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return nil, err
	}
	for what, inf := range map[string]cache.SharedIndexInformer{"Services": set.services, "EndpointSlices": set.slices, "TrafficPolicies": set.policies} {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			w.h.WatchError(what, ns, err)
		}); err != nil {
			return nil, err
		}
	}
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
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
	} {
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
		set.factory.Start(ctx.Done())
		wg.Go(func() { set.policies.RunWithContext(ctx) })
	}
	<-ctx.Done()
	for _, set := range w.sets {
		set.factory.Shutdown()
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
	}
	return in
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
