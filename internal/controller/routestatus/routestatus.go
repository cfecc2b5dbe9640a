// Package routestatus writes, into every HTTPRoute and GRPCRoute whose
// parents are Services, Tandem's status.parents entries (controllerName
// tandem.dev/mesh): whether the route is accepted on each Service parent,
// whether its backends resolve, which rules were dropped, and what
// proxyless gRPC clients do not apply. The conditions come from the
// agents' own translation (xds.EvaluateRoutes), so the status cannot
// disagree with what the clients do. Entries of other controllers (a
// Gateway's) are left as they are.
package routestatus

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes/status;grpcroutes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch

// Kind is a route kind.
type Kind string

const (
	HTTPRoute Kind = "HTTPRoute"
	GRPCRoute Kind = "GRPCRoute"
)

// Kinds are the route kinds Tandem routes with.
var Kinds = []Kind{HTTPRoute, GRPCRoute}

// Field indexes of both route kinds.
const (
	// ParentIndex holds the "namespace/name" of each Service parent.
	ParentIndex = "tandem.dev/parent-services"
	// serviceIndex holds those of parents and backends: the Services
	// whose changes change the route's status.
	serviceIndex = "tandem.dev/services"
)

// Reconciler writes the status of the routes of one kind.
type Reconciler struct {
	Client client.Client
	Kind   Kind
}

// New returns an empty route of kind.
func New(kind Kind) client.Object {
	if kind == GRPCRoute {
		return &gatewayv1.GRPCRoute{}
	}
	return &gatewayv1.HTTPRoute{}
}

// NewList returns an empty list of routes of kind.
func NewList(kind Kind) client.ObjectList {
	if kind == GRPCRoute {
		return &gatewayv1.GRPCRouteList{}
	}
	return &gatewayv1.HTTPRouteList{}
}

// Routes are the routes of a list, as objects.
func Routes(list client.ObjectList) []client.Object {
	var out []client.Object
	switch l := list.(type) {
	case *gatewayv1.HTTPRouteList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *gatewayv1.GRPCRouteList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	}
	return out
}

// ParentRefs and status of either kind.
func parts(obj client.Object) ([]gatewayv1.ParentReference, *gatewayv1.RouteStatus) {
	switch r := obj.(type) {
	case *gatewayv1.HTTPRoute:
		return r.Spec.ParentRefs, &r.Status.RouteStatus
	case *gatewayv1.GRPCRoute:
		return r.Spec.ParentRefs, &r.Status.RouteStatus
	}
	return nil, nil
}

// Add adds a route to translation inputs.
func Add(in *xds.Inputs, obj client.Object) {
	switch r := obj.(type) {
	case *gatewayv1.HTTPRoute:
		in.HTTPRoutes = append(in.HTTPRoutes, r)
	case *gatewayv1.GRPCRoute:
		in.GRPCRoutes = append(in.GRPCRoutes, r)
	}
}

// ServiceParents are the route's Service parents, "namespace/name".
func ServiceParents(obj client.Object) []string {
	refs, _ := parts(obj)
	return xds.ServiceParents(obj.GetNamespace(), refs)
}

// services are the Services a route's status depends on: its parents and
// its backends.
func services(obj client.Object) []string {
	var in xds.Inputs
	Add(&in, obj)
	out := ServiceParents(obj)
	for _, b := range xds.RouteBackends(in) {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// IndexFields registers the field indexes of both route kinds, once per
// manager (Setup does).
func IndexFields(mgr ctrl.Manager) error {
	for _, kind := range Kinds {
		for name, keys := range map[string]func(client.Object) []string{ParentIndex: ServiceParents, serviceIndex: services} {
			if err := mgr.GetFieldIndexer().IndexField(context.Background(), New(kind), name, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetupWithManager registers the controller: a route, a Service it names
// as parent or backend, and for HTTPRoutes a GRPCRoute on the same parent
// (which may take a port from it) re-evaluate the route. The field
// indexes must be registered (IndexFields); Setup does both.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("routestatus-"+strings.ToLower(string(r.Kind))).
		For(New(r.Kind)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, svc client.Object) []reconcile.Request {
			return r.routesBy(ctx, serviceIndex, []string{svc.GetNamespace() + "/" + svc.GetName()})
		}))
	if r.Kind == HTTPRoute {
		b = b.Watches(New(GRPCRoute), handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, g client.Object) []reconcile.Request {
			return r.routesBy(ctx, ParentIndex, ServiceParents(g))
		}))
	}
	return b.Complete(r)
}

// routesBy lists the routes of r's kind with any of keys in an index.
func (r *Reconciler) routesBy(ctx context.Context, index string, keys []string) []reconcile.Request {
	var reqs []reconcile.Request
	for _, k := range keys {
		list := NewList(r.Kind)
		if err := r.Client.List(ctx, list, client.MatchingFields{index: k}); err != nil {
			continue
		}
		for _, o := range Routes(list) {
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)}
			if !slices.Contains(reqs, req) {
				reqs = append(reqs, req)
			}
		}
	}
	return reqs
}

// Reconcile evaluates one route and writes its status when it changed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	route := New(r.Kind)
	if err := r.Client.Get(ctx, req.NamespacedName, route); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	in, err := r.inputs(ctx, route)
	if err != nil {
		return ctrl.Result{}, err
	}
	var st *xds.RouteStatus
	for _, s := range xds.EvaluateRoutes(in) {
		if s.Kind == string(r.Kind) && s.Namespace == route.GetNamespace() && s.Name == route.GetName() {
			st = &s
			break
		}
	}
	if st == nil {
		return ctrl.Result{}, fmt.Errorf("%s %s: the translation did not evaluate it", r.Kind, req.NamespacedName)
	}
	refs, status := parts(route)
	want := Parents(refs, *st, status.Parents, route.GetGeneration())
	if parentsEqual(status.Parents, want) {
		return ctrl.Result{}, nil
	}
	status.Parents = want
	return ctrl.Result{}, r.Client.Status().Update(ctx, route)
}

// inputs are what the route's status depends on: the route, the Services
// it names, and for an HTTPRoute the GRPCRoutes on its parents.
func (r *Reconciler) inputs(ctx context.Context, route client.Object) (xds.Inputs, error) {
	var in xds.Inputs
	Add(&in, route)
	for _, key := range services(route) {
		var svc corev1.Service
		ns, name, _ := strings.Cut(key, "/")
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc)
		switch {
		case err == nil:
			in.Services = append(in.Services, &svc)
		case client.IgnoreNotFound(err) != nil:
			return in, err
		}
	}
	if r.Kind == HTTPRoute {
		for _, key := range ServiceParents(route) {
			list := NewList(GRPCRoute)
			if err := r.Client.List(ctx, list, client.MatchingFields{ParentIndex: key}); err != nil {
				return in, err
			}
			for _, g := range Routes(list) {
				if !slices.ContainsFunc(in.GRPCRoutes, func(x *gatewayv1.GRPCRoute) bool { return x.Namespace == g.GetNamespace() && x.Name == g.GetName() }) {
					Add(&in, g)
				}
			}
		}
	}
	return in, nil
}

// Parents is the status.parents a route should have: the entries of other
// controllers as they are, and one of Tandem's for each Service parent,
// its conditions merged into the entry it had (a condition whose status
// did not change keeps its lastTransitionTime).
func Parents(refs []gatewayv1.ParentReference, st xds.RouteStatus, existing []gatewayv1.RouteParentStatus, generation int64) []gatewayv1.RouteParentStatus {
	var out []gatewayv1.RouteParentStatus
	for _, e := range existing {
		if e.ControllerName != wellknown.RouteControllerName {
			out = append(out, e)
		}
	}
	for _, p := range st.Parents {
		ref := refs[p.Index]
		if slices.ContainsFunc(out, func(e gatewayv1.RouteParentStatus) bool {
			return e.ControllerName == wellknown.RouteControllerName && reflect.DeepEqual(e.ParentRef, ref)
		}) {
			continue // the same parent listed twice
		}
		var conds []metav1.Condition
		for _, e := range existing {
			if e.ControllerName == wellknown.RouteControllerName && reflect.DeepEqual(e.ParentRef, ref) {
				conds = slices.Clone(e.Conditions)
			}
		}
		set := func(typ string, c xds.RouteCondition) {
			s := metav1.ConditionTrue
			if !c.OK {
				s = metav1.ConditionFalse
			}
			meta.SetStatusCondition(&conds, metav1.Condition{Type: typ, Status: s, Reason: c.Reason,
				Message: truncate(c.Message), ObservedGeneration: generation})
		}
		set(string(gatewayv1.RouteConditionAccepted), p.Accepted)
		set(string(gatewayv1.RouteConditionResolvedRefs), st.ResolvedRefs)
		if st.DroppedRules != "" && p.Accepted.OK {
			set(string(gatewayv1.RouteConditionPartiallyInvalid), xds.RouteCondition{OK: true,
				Reason: string(gatewayv1.RouteReasonUnsupportedValue), Message: st.DroppedRules})
		} else {
			meta.RemoveStatusCondition(&conds, string(gatewayv1.RouteConditionPartiallyInvalid))
		}
		set(wellknown.ConditionProxylessCompatible, st.Proxyless)
		out = append(out, gatewayv1.RouteParentStatus{
			ParentRef:      ref,
			ControllerName: wellknown.RouteControllerName,
			Conditions:     conds,
		})
	}
	return out
}

// maxMessage is a condition message's limit in the API (32768 bytes).
const maxMessage = 32768

func truncate(msg string) string {
	if len(msg) <= maxMessage {
		return msg
	}
	return msg[:maxMessage-3] + "..."
}

// parentsEqual ignores lastTransitionTime, which SetStatusCondition keeps
// when nothing else changed.
func parentsEqual(a, b []gatewayv1.RouteParentStatus) bool {
	strip := func(ps []gatewayv1.RouteParentStatus) []gatewayv1.RouteParentStatus {
		out := make([]gatewayv1.RouteParentStatus, len(ps))
		for i, p := range ps {
			out[i] = *p.DeepCopy()
			for j := range out[i].Conditions {
				out[i].Conditions[j].LastTransitionTime = metav1.Time{}
			}
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// Setup sets up the status controllers of both route kinds once the API
// server serves them (the Gateway API CRDs are installed, now or later),
// asking every `every`; then also, what else needs the routes (the
// TrafficPolicy status's watch of them).
func Setup(mgr ctrl.Manager, every time.Duration, also ...func() error) error {
	return whenServed(mgr, every, func() error {
		if err := IndexFields(mgr); err != nil {
			return err
		}
		for _, kind := range Kinds {
			if err := (&Reconciler{Client: mgr.GetClient(), Kind: kind}).SetupWithManager(mgr); err != nil {
				return err
			}
		}
		for _, f := range also {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})
}

// whenServed runs setup once the API server serves both route kinds,
// asking every `every`. It runs on the leader: the controllers it sets up
// write status.
func whenServed(mgr ctrl.Manager, every time.Duration, setup func() error) error {
	log := mgr.GetLogger().WithName("routestatus")
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for waited := false; ; waited = true {
			if served(mgr) {
				if waited {
					log.Info("the Gateway API routes are served now: writing their status")
				}
				return setup()
			}
			if !waited {
				log.Info("the API server does not serve HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1): install the Gateway API CRDs (config/gateway-api) for mesh routing; asking again every " + every.String())
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(every):
			}
		}
	}))
}

func served(mgr ctrl.Manager) bool {
	for _, kind := range Kinds {
		if _, err := mgr.GetRESTMapper().RESTMapping(schema.GroupKind{Group: gatewayv1.GroupName, Kind: string(kind)}, "v1"); err != nil {
			return false
		}
	}
	return true
}
