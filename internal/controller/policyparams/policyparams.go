// Package policyparams publishes discovery's address and CA into the
// ConfigMap the admission policies read (config/policy), so pods the API
// server injects follow discovery as webhook-injected pods do. The
// ConfigMap belongs to the install; the injector writes only its two keys,
// never creates the ConfigMap, and puts the keys back when the ConfigMap is
// replaced. Without a CA (discovery off, or no certificate yet) the keys
// are removed and new pods' agents watch the API server.
package policyparams

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// The injector may read and patch ConfigMaps of its own namespace only
// (config/rbac: a Role).
// +kubebuilder:rbac:groups="",namespace=tandem-system,resources=configmaps,verbs=get;list;watch;patch

// Reconciler keeps the two keys of one ConfigMap equal to Address and CA().
type Reconciler struct {
	Client          client.Client
	Namespace, Name string
	// Address is discovery's host:port as agents dial it; CA returns the
	// PEM agents verify it with ("" when there is none).
	Address string
	CA      func() string
	// Changed receives an event whenever CA() may have changed.
	Changed <-chan event.GenericEvent
}

// CacheByObject limits the manager's ConfigMap cache to the one ConfigMap.
func CacheByObject(namespace, name string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", name),
		},
	}
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	only := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace && o.GetName() == r.Name
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("policyparams").
		For(&corev1.ConfigMap{}, builder.WithPredicates(only))
	if r.Changed != nil {
		b = b.WatchesRawSource(source.Channel(r.Changed, handler.EnqueueRequestsFromMapFunc(
			func(context.Context, client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: r.Namespace, Name: r.Name}}}
			})))
	}
	return b.Complete(r)
}

// Reconcile patches the two keys when they differ from what they should be.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var cm corev1.ConfigMap
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.Name}, &cm)
	if apierrors.IsNotFound(err) {
		// Not installed (yet): the ConfigMap's creation brings us back.
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	want := map[string]*string{wellknown.ParamDiscoveryAddress: nil, wellknown.ParamDiscoveryCA: nil} // nil removes
	if ca := r.CA(); ca != "" && r.Address != "" {
		want[wellknown.ParamDiscoveryAddress], want[wellknown.ParamDiscoveryCA] = &r.Address, &ca
	}
	same := true
	for k, v := range want {
		cur, has := cm.Data[k]
		if (v == nil && has) || (v != nil && (!has || cur != *v)) {
			same = false
		}
	}
	if same {
		return ctrl.Result{}, nil
	}
	// A merge patch never creates the ConfigMap and leaves its other keys
	// (the install's) alone.
	patch, err := json.Marshal(map[string]any{"data": want})
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Patch(ctx, &cm, client.RawPatch(types.MergePatchType, patch), client.FieldOwner("tandem-injector")); err != nil {
		return ctrl.Result{}, fmt.Errorf("publishing discovery's address and CA in ConfigMap %s/%s: %w", r.Namespace, r.Name, err)
	}
	log.FromContext(ctx).Info("published discovery's address and CA for the admission policies", "configMap", r.Namespace+"/"+r.Name, "address", r.Address, "withCA", want[wellknown.ParamDiscoveryCA] != nil)
	return ctrl.Result{}, nil
}
