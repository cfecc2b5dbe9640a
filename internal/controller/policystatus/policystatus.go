// Package policystatus reports on each TrafficPolicy whether it is accepted
// and whether the Service it targets exists, so `kubectl get tp` tells a
// user at a glance why a policy has no effect.
package policystatus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/controller/routestatus"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Reasons of the conditions this controller sets.
const (
	ReasonAccepted        = "Accepted"
	ReasonTargetNotFound  = "TargetNotFound"
	ReasonPortNotFound    = "PortNotFound"
	ReasonConflicted      = "Conflicted"
	ReasonInvalid         = "Invalid"
	ReasonServiceFound    = "ServiceFound"
	ReasonServiceNotFound = "ServiceNotFound"
)

// targetIndex indexes TrafficPolicies by the Service name they target.
const targetIndex = "spec.targetRef.name"

// +kubebuilder:rbac:groups=traffic.tandem.dev,resources=trafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=traffic.tandem.dev,resources=trafficpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch

// Reconciler sets the status of one TrafficPolicy per request.
type Reconciler struct {
	Client client.Client
	// routes is set once the Gateway API routes are watched (WatchRoutes):
	// a route's timeouts win over the policy's, which its status says.
	routes atomic.Bool
}

// WatchRoutes makes the routes on a policy's target Service part of its
// status, re-evaluated when they change. The routes' field indexes must
// be registered (routestatus.IndexFields).
func (r *Reconciler) WatchRoutes(mgr ctrl.Manager) error {
	r.routes.Store(true)
	b := ctrl.NewControllerManagedBy(mgr).Named("policystatus-routes")
	for _, kind := range routestatus.Kinds {
		b = b.Watches(routestatus.New(kind), handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, route client.Object) []reconcile.Request {
			var reqs []reconcile.Request
			for _, key := range routestatus.ServiceParents(route) {
				ns, name, _ := strings.Cut(key, "/")
				reqs = append(reqs, r.policiesTargeting(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})...)
			}
			return reqs
		}))
	}
	return b.Complete(r)
}

// SetupWithManager registers the controller; a Service appearing, changing
// or going away re-evaluates the policies that target it.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.TrafficPolicy{}, targetIndex,
		func(o client.Object) []string {
			return []string{o.(*v1alpha1.TrafficPolicy).Spec.TargetRef.Name}
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("policystatus").
		For(&v1alpha1.TrafficPolicy{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.policiesTargeting)).
		Complete(r)
}

func (r *Reconciler) policiesTargeting(ctx context.Context, svc client.Object) []reconcile.Request {
	var list v1alpha1.TrafficPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(svc.GetNamespace()),
		client.MatchingFields{targetIndex: svc.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// Reconcile computes both conditions of one policy and writes them when
// they changed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var tp v1alpha1.TrafficPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &tp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var svc corev1.Service
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: tp.Namespace, Name: tp.Spec.TargetRef.Name}, &svc)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	found := err == nil
	var rivals v1alpha1.TrafficPolicyList
	if err := r.Client.List(ctx, &rivals, client.InNamespace(tp.Namespace),
		client.MatchingFields{targetIndex: tp.Spec.TargetRef.Name}); err != nil {
		return ctrl.Result{}, err
	}
	var svcPtr *corev1.Service
	if found {
		svcPtr = &svc
	}
	var routes xds.Inputs
	if r.routes.Load() {
		for _, kind := range routestatus.Kinds {
			list := routestatus.NewList(kind)
			if err := r.Client.List(ctx, list, client.MatchingFields{routestatus.ParentIndex: tp.Namespace + "/" + tp.Spec.TargetRef.Name}); err != nil {
				return ctrl.Result{}, err
			}
			for _, route := range routestatus.Routes(list) {
				routestatus.Add(&routes, route)
			}
		}
	}
	accepted, target := Evaluate(&tp, svcPtr, rivals.Items, routes)

	before := tp.Status.DeepCopy()
	accepted.ObservedGeneration = tp.Generation
	target.ObservedGeneration = tp.Generation
	meta.SetStatusCondition(&tp.Status.Conditions, accepted)
	meta.SetStatusCondition(&tp.Status.Conditions, target)
	tp.Status.ObservedGeneration = tp.Generation
	if statusEqual(before, &tp.Status) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Update(ctx, &tp)
}

// Evaluate returns the Accepted and TargetFound conditions of tp, given its
// target Service (nil when missing), every policy of the namespace that
// targets the same Service (tp may be among them), and the routes naming
// that Service as a parent (the HTTPRoutes and GRPCRoutes of routes).
//
// Whether the policy applies is asked of the agents' own translation, so
// the status can never disagree with what the sidecars do.
func Evaluate(tp *v1alpha1.TrafficPolicy, svc *corev1.Service, rivals []v1alpha1.TrafficPolicy, routes xds.Inputs) (accepted, target metav1.Condition) {
	name := tp.Spec.TargetRef.Name
	accepted = metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonAccepted,
		Message: "the policy applies to Service " + name}
	target = metav1.Condition{Type: v1alpha1.ConditionTargetFound, Status: metav1.ConditionTrue, Reason: ReasonServiceFound,
		Message: "Service " + name + " exists"}
	if svc == nil {
		target.Status, target.Reason = metav1.ConditionFalse, ReasonServiceNotFound
		target.Message = fmt.Sprintf("Service %s not found in namespace %s", name, tp.Namespace)
	}

	in := xds.Inputs{Policies: []*v1alpha1.TrafficPolicy{tp}, HTTPRoutes: routes.HTTPRoutes, GRPCRoutes: routes.GRPCRoutes}
	for i := range rivals {
		if rivals[i].Name != tp.Name {
			in.Policies = append(in.Policies, &rivals[i])
		}
	}
	if svc != nil {
		in.Services = []*corev1.Service{svc}
	}
	if xds.OverridesSessionAffinity(svc, tp) {
		accepted.Message += "; its loadBalancer overrides the Service's sessionAffinity ClientIP"
	}
	if won := xds.RouteTimeoutOverrides(in, tp); len(won) > 0 {
		accepted.Message += "; the timeouts of " + strings.Join(won, ", ") + " replace its own there (a route's timeouts win)"
	}
	_, errs := xds.Translate(in, xds.Sidecar)
	for _, err := range errs {
		var oe *xds.ObjectError
		if !errors.As(err, &oe) || oe.Kind != "TrafficPolicy" || oe.Namespace != tp.Namespace || oe.Name != tp.Name {
			continue
		}
		accepted.Status, accepted.Message = metav1.ConditionFalse, oe.Err.Error()
		switch {
		case errors.Is(err, xds.ErrPolicyTargetMissing):
			accepted.Reason = ReasonTargetNotFound
		case errors.Is(err, xds.ErrPolicyPortMissing):
			accepted.Reason = ReasonPortNotFound
		case errors.Is(err, xds.ErrPolicyOverridden):
			accepted.Reason = ReasonConflicted
		default:
			accepted.Reason = ReasonInvalid
		}
		break
	}
	return accepted, target
}

// statusEqual ignores LastTransitionTime, which SetStatusCondition keeps
// when nothing else changed.
func statusEqual(a, b *v1alpha1.TrafficPolicyStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}
