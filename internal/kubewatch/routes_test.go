package kubewatch

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
)

func serviceParent(name string, ns *string) gatewayv1.ParentReference {
	p := gatewayv1.ParentReference{Group: ptrTo(gatewayv1.Group("")), Kind: ptrTo(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
	if ns != nil {
		p.Namespace = ptrTo(gatewayv1.Namespace(*ns))
	}
	return p
}

func TestRouteParentsAreServices(t *testing.T) {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "client", Name: "r"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{
			serviceParent("echo", ptrTo("mesh")),
			serviceParent("local", nil),
			serviceParent("local", nil), // listed twice: one key
			{Name: "gateway"},           // a Gateway: not a Service
			{Group: ptrTo(gatewayv1.Group("")), // a core kind that is no Service
				Kind: ptrTo(gatewayv1.Kind("ConfigMap")), Name: "cm"},
		}},
	}}
	keys, err := routeParents(r)
	if err != nil || !reflect.DeepEqual(keys, []string{"mesh/echo", "client/local"}) {
		t.Errorf("routeParents = %v, %v; want mesh/echo and client/local", keys, err)
	}
	if keys, _ := routeParents(cache.DeletedFinalStateUnknown{Obj: r}); len(keys) != 2 {
		t.Errorf("a tombstone's parents: %v", keys)
	}
}

func TestStripRoutes(t *testing.T) {
	r := &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "g", Generation: 4, CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec:       gatewayv1.GRPCRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParent("greeter", nil)}}},
		Status: gatewayv1.GRPCRouteStatus{RouteStatus: gatewayv1.RouteStatus{Parents: []gatewayv1.RouteParentStatus{{
			ControllerName: "tandem.dev/mesh"}}}},
	}
	withNoise(&r.ObjectMeta)
	out, _ := strip(r)
	got := out.(*gatewayv1.GRPCRoute)
	if !reflect.DeepEqual(got.Spec, r.Spec) || got.Status.Parents != nil || got.Annotations != nil || got.ManagedFields != nil {
		t.Errorf("strip(GRPCRoute) = %+v: want the spec without status or noise", got)
	}
	if !got.CreationTimestamp.Equal(&r.CreationTimestamp) {
		t.Error("creation time lost; the older of two routes wins ties")
	}
}

// fakeRoutes is an HTTPRoute source whose CRD can be installed.
type fakeRoutes struct {
	mu        sync.Mutex
	installed bool
	routes    []gatewayv1.HTTPRoute
	watches   []*watch.FakeWatcher
}

func (f *fakeRoutes) List(metav1.ListOptions) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: gatewayv1.GroupName, Resource: "httproutes"}, "")
	}
	return &gatewayv1.HTTPRouteList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: f.routes}, nil
}

func (f *fakeRoutes) Watch(metav1.ListOptions) (watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: gatewayv1.GroupName, Resource: "httproutes"}, "")
	}
	w := watch.NewFake()
	f.watches = append(f.watches, w)
	return w, nil
}

type noPolicies struct{}

func (noPolicies) List(metav1.ListOptions) (runtime.Object, error) {
	return &v1alpha1.TrafficPolicyList{}, nil
}
func (noPolicies) Watch(metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil }
func (noPolicies) IsWatchListSemanticsUnSupported() bool             { return true }

// Without the Gateway API CRDs the watch syncs at once and serves the
// rest; once they are installed their routes arrive within a recheck, and
// the Services they name are reported changed.
func TestRoutesWithoutTheirCRD(t *testing.T) {
	defer func(d time.Duration) { absentRecheck = d }(absentRecheck)
	absentRecheck = 100 * time.Millisecond

	routes := &fakeRoutes{}
	var (
		mu       sync.Mutex
		changed  []string
		unserved []error
	)
	services, endpointSlices := kubeobj.ListWatches(fake.NewClientset())
	w, err := New(Sources{
		Services:       services,
		EndpointSlices: endpointSlices,
		Policies:       func(string) cache.ListerWatcher { return noPolicies{} },
		HTTPRoutes:     func(string) cache.ListerWatcher { return routes },
	}, nil, Handler{
		ServiceChanged: func(key string) { mu.Lock(); changed = append(changed, key); mu.Unlock() },
		Unserved:       func(_, _ string, err error) { mu.Lock(); unserved = append(unserved, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 5*time.Second)
	defer syncCancel()
	if err := w.WaitForSync(syncCtx); err != nil {
		t.Fatalf("the watch did not sync without the routes' CRD: %v", err)
	}
	mu.Lock()
	if len(unserved) != 1 || !apierrors.IsNotFound(unserved[0]) {
		t.Errorf("Unserved heard %v, want the NotFound once", unserved)
	}
	mu.Unlock()

	routes.mu.Lock()
	routes.installed = true
	routes.routes = []gatewayv1.HTTPRoute{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "canary", ResourceVersion: "1"},
		Spec:       gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParent("reviews", nil)}}},
	}}
	routes.mu.Unlock()
	poll.Until(t, 5*time.Second, "the route to arrive once its CRD is installed", func() bool {
		return len(w.Inputs().HTTPRoutes) == 1
	})
	if http, _ := w.Routes("shop/reviews"); len(http) != 1 || http[0].Name != "canary" {
		t.Errorf("Routes(shop/reviews) = %v, want the canary route", http)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(changed, "shop/reviews") {
		t.Errorf("ServiceChanged heard %v, want shop/reviews, the route's parent", changed)
	}
	if len(unserved) != 2 || unserved[1] != nil {
		t.Errorf("Unserved heard %v, want the NotFound, then nil once served", unserved)
	}
}

// The injector writes routes' status: that is no change to translate.
func TestRouteStatusIsNoChange(t *testing.T) {
	var changed []string
	w := &Watcher{h: Handler{ServiceChanged: func(k string) { changed = append(changed, k) }}}
	old := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "r"},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParent("a", nil)}}}}
	cur := old.DeepCopy()
	cur.Status.Parents = []gatewayv1.RouteParentStatus{{ControllerName: "tandem.dev/mesh"}}
	w.routeChanged(old, cur)
	if len(changed) != 0 {
		t.Errorf("a status update reported %v changed", changed)
	}
	moved := old.DeepCopy()
	moved.Spec.ParentRefs = []gatewayv1.ParentReference{serviceParent("b", nil)}
	w.routeChanged(old, moved)
	slices.Sort(changed)
	if !reflect.DeepEqual(changed, []string{"shop/a", "shop/b"}) {
		t.Errorf("a route moved from a to b reported %v, want both", changed)
	}
}
