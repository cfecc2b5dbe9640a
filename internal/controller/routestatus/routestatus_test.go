package routestatus_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
	"github.com/tandem-mesh/tandem/internal/controller/routestatus"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

const ns = "shop"

// setup is what the injector runs: the route controllers once the routes
// are served, and the routes in TrafficPolicy status.
func setup(mgr ctrl.Manager, recheck time.Duration) error {
	policies := &policystatus.Reconciler{Client: mgr.GetClient()}
	if err := policies.SetupWithManager(mgr); err != nil {
		return err
	}
	return routestatus.Setup(mgr, recheck, func() error { return policies.WatchRoutes(mgr) })
}

// managerOptions let each test of the package run the injector's
// controllers under their own names in one process.
func managerOptions() manager.Options {
	return manager.Options{Controller: config.Controller{SkipNameValidation: new(true)}}
}

func service(name string, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("grpc-%d", p), Port: p})
	}
	return s
}

func parent(name string, port int32) gatewayv1.ParentReference {
	p := gatewayv1.ParentReference{Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
	if port != 0 {
		p.Port = new(port)
	}
	return p
}

func backend(name string, port int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(name), Port: new(port)}}}
}

func httpRoute(name string, parents []gatewayv1.ParentReference, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parents}, Rules: rules}}
}

// ours waits until the route has Tandem's entry for each parent index
// given, with the conditions check accepts.
func ours(t *testing.T, c client.Client, obj client.Object, check func(parents []gatewayv1.RouteParentStatus) error) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		var parents []gatewayv1.RouteParentStatus
		switch r := obj.(type) {
		case *gatewayv1.HTTPRoute:
			parents = r.Status.Parents
		case *gatewayv1.GRPCRoute:
			parents = r.Status.Parents
		}
		return check(parents)
	})
}

// conditions checks Tandem's entry for Service parent name: each wanted
// condition type has the status and reason given ("True/Accepted"), at
// the route's generation.
func conditions(obj client.Object, name string, want map[string]string) func([]gatewayv1.RouteParentStatus) error {
	return func(parents []gatewayv1.RouteParentStatus) error {
		for _, p := range parents {
			if p.ControllerName != wellknown.RouteControllerName || string(p.ParentRef.Name) != name {
				continue
			}
			for typ, w := range want {
				c := meta.FindStatusCondition(p.Conditions, typ)
				if c == nil {
					if w == "" {
						continue
					}
					return fmt.Errorf("parent %s: no %s condition in %+v", name, typ, p.Conditions)
				}
				if got := string(c.Status) + "/" + c.Reason; got != w {
					return fmt.Errorf("parent %s: %s is %s (%s), want %s", name, typ, got, c.Message, w)
				}
				if c.ObservedGeneration != obj.GetGeneration() {
					return fmt.Errorf("parent %s: %s observedGeneration %d, route generation %d", name, typ, c.ObservedGeneration, obj.GetGeneration())
				}
			}
			return nil
		}
		return fmt.Errorf("no entry of %s for parent %s in %+v", wellknown.RouteControllerName, name, parents)
	}
}

func message(parents []gatewayv1.RouteParentStatus, name, typ string) string {
	for _, p := range parents {
		if p.ControllerName == wellknown.RouteControllerName && string(p.ParentRef.Name) == name {
			if c := meta.FindStatusCondition(p.Conditions, typ); c != nil {
				return c.Message
			}
		}
	}
	return ""
}

func TestRouteStatus(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{GatewayAPI: true})
	testenv.StartManager(t, cfg, managerOptions(), func(mgr ctrl.Manager) error { return setup(mgr, time.Second) })
	c := testenv.Client(t, cfg)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*corev1.Service{service("reviews", 80), service("reviews-v1", 80), service("ratings", 80, 7070)} {
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("GoodRoute", func(t *testing.T) {
		r := httpRoute("canary", []gatewayv1.ParentReference{parent("reviews", 0)},
			gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v1", 80)}})
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, conditions(r, "reviews", map[string]string{
			"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs",
			wellknown.ConditionProxylessCompatible: "True/Compatible", "PartiallyInvalid": ""}))
	})

	t.Run("MissingBackendThenCreated", func(t *testing.T) {
		r := httpRoute("to-v2", []gatewayv1.ParentReference{parent("reviews", 80)},
			gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v2", 80)}})
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, conditions(r, "reviews", map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/BackendNotFound"}))
		if m := message(r.Status.Parents, "reviews", "ResolvedRefs"); !strings.Contains(m, "shop/reviews-v2 does not exist") || !strings.Contains(m, "HTTP 500") {
			t.Errorf("ResolvedRefs message %q does not name the missing backend and what its share gets", m)
		}
		if err := c.Create(ctx, service("reviews-v2", 80)); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, conditions(r, "reviews", map[string]string{"ResolvedRefs": "True/ResolvedRefs"}))
	})

	t.Run("MissingParentAndOtherControllers", func(t *testing.T) {
		other := gatewayv1.ParentReference{Name: "gateway"}
		r := httpRoute("ghost", []gatewayv1.ParentReference{parent("ghost", 0), other},
			gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v1", 80)}})
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		// A Gateway controller's entry, written beside ours (which may be
		// there already).
		gatewayEntry := gatewayv1.RouteParentStatus{ParentRef: other, ControllerName: "example.com/gateway",
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}}}
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
				return err
			}
			r.Status.Parents = append(r.Status.Parents, gatewayEntry)
			return c.Status().Update(ctx, r)
		}); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, conditions(r, "ghost", map[string]string{"Accepted": "False/NoMatchingParent"}))
		kept := false
		for _, p := range r.Status.Parents {
			kept = kept || (p.ControllerName == "example.com/gateway" && meta.IsStatusConditionTrue(p.Conditions, "Accepted"))
		}
		if !kept || len(r.Status.Parents) != 2 {
			t.Errorf("status.parents %+v: want the Gateway controller's entry kept beside ours", r.Status.Parents)
		}
		// A parent taken out of the spec takes Tandem's entry with it.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
				return err
			}
			r.Spec.ParentRefs = []gatewayv1.ParentReference{other}
			return c.Update(ctx, r)
		}); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, func(parents []gatewayv1.RouteParentStatus) error {
			if len(parents) != 1 || parents[0].ControllerName != "example.com/gateway" {
				return fmt.Errorf("status.parents %+v, want only the Gateway controller's", parents)
			}
			return nil
		})
	})

	t.Run("PartlyInvalidAndProxyless", func(t *testing.T) {
		bad := gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
			Type: new(gatewayv1.PathMatchRegularExpression), Value: new("/items/[0-9")}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v1", 80)}}
		good := gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-canary", Value: "1"}}}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v1", 80)}}
		r := httpRoute("partly", []gatewayv1.ParentReference{parent("reviews", 0)}, bad, good)
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		ours(t, c, r, conditions(r, "reviews", map[string]string{"Accepted": "True/Accepted", "PartiallyInvalid": "True/UnsupportedValue",
			wellknown.ConditionProxylessCompatible: "False/UnsupportedValue"}))
		if m := message(r.Status.Parents, "reviews", "PartiallyInvalid"); !strings.HasPrefix(m, "Dropped Rule") || !strings.Contains(m, "rule 0") {
			t.Errorf("PartiallyInvalid message %q: want it to start with Dropped Rule and name rule 0", m)
		}
		if m := message(r.Status.Parents, "reviews", wellknown.ConditionProxylessCompatible); !strings.Contains(m, "RequestHeaderModifier") {
			t.Errorf("proxyless message %q does not name the header filter", m)
		}
	})

	t.Run("GRPCRouteTakesThePort", func(t *testing.T) {
		h := httpRoute("ratings-http", []gatewayv1.ParentReference{parent("ratings", 7070)},
			gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("ratings", 7070)}})
		if err := c.Create(ctx, h); err != nil {
			t.Fatal(err)
		}
		ours(t, c, h, conditions(h, "ratings", map[string]string{"Accepted": "True/Accepted"}))
		g := &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ratings-grpc"},
			Spec: gatewayv1.GRPCRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent("ratings", 0)}},
				Rules: []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: "ratings", Port: new(int32(7070))}}}}}}}}
		if err := c.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		ours(t, c, g, conditions(g, "ratings", map[string]string{"Accepted": "True/Accepted"}))
		ours(t, c, h, conditions(h, "ratings", map[string]string{"Accepted": "False/Conflicted"}))
		if err := c.Delete(ctx, g); err != nil {
			t.Fatal(err)
		}
		ours(t, c, h, conditions(h, "ratings", map[string]string{"Accepted": "True/Accepted"}))
	})

	t.Run("TrafficPolicySaysTheRouteTimeoutWins", func(t *testing.T) {
		tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
			Spec: v1alpha1.TrafficPolicySpec{TargetRef: v1alpha1.TargetRef{Name: "reviews"}, Timeout: &metav1.Duration{Duration: 2 * time.Second}}}
		if err := c.Create(ctx, tp); err != nil {
			t.Fatal(err)
		}
		r := httpRoute("slow", []gatewayv1.ParentReference{parent("reviews", 0)}, gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchPathPrefix), Value: new("/report")}}},
			Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: new(gatewayv1.Duration("30s"))},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews-v1", 80)}})
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		poll.Eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(tp), tp); err != nil {
				return err
			}
			a := meta.FindStatusCondition(tp.Status.Conditions, "Accepted")
			if a == nil || !strings.Contains(a.Message, "HTTPRoute shop/slow on port 80") || !strings.Contains(a.Message, "a route's timeouts win") {
				return fmt.Errorf("TrafficPolicy Accepted %+v: want it to say the timeouts of HTTPRoute shop/slow win", a)
			}
			return nil
		})
	})
}

// Installed after the injector started, the CRDs are found and the
// routes' status written.
func TestRouteStatusOnceTheCRDsAreInstalled(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	testenv.StartManager(t, cfg, managerOptions(), func(mgr ctrl.Manager) error { return setup(mgr, 200*time.Millisecond) })
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{filepath.Join(root, "config", "gateway-api")}}); err != nil {
		t.Fatal(err)
	}
	c := testenv.Client(t, cfg)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, service("reviews", 80)); err != nil {
		t.Fatal(err)
	}
	r := httpRoute("late", []gatewayv1.ParentReference{parent("reviews", 0)},
		gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("reviews", 80)}})
	poll.Eventually(t, 10*time.Second, func() error { return c.Create(ctx, r) })
	ours(t, c, r, conditions(r, "reviews", map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs"}))
}
