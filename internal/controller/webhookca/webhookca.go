// Package webhookca writes the CA of the certificate the injector serves
// into the caBundle of every webhook of its MutatingWebhookConfiguration,
// for installs where nothing else does (no cert-manager: the injector
// issues its certificate itself). The configuration belongs to the
// install: the injector never creates or deletes it and changes nothing
// but the caBundle fields, with a JSON patch that first tests each
// webhook's name, so a configuration edited meanwhile (a webhook added,
// removed or reordered, a Service replaced by a URL) is read again rather
// than overwritten.
package webhookca

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
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
)

// The injector may read and patch its own webhook configuration, no other
// (list and watch are limited to it by a field selector on its name).
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=tandem-injector,verbs=get;list;watch;patch

// Reconciler keeps the caBundle of every webhook of one
// MutatingWebhookConfiguration equal to CA().
type Reconciler struct {
	Client client.Client
	// Name of the MutatingWebhookConfiguration.
	Name string
	// CA returns the PEM of the CA that signed the certificate the webhook
	// serves ("" while there is none: the caBundle is left as it is).
	CA func() string
	// Changed receives an event whenever CA() may have changed.
	Changed <-chan event.GenericEvent
}

// CacheByObject limits the manager's cache of webhook configurations to the one.
func CacheByObject(name string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&admissionregv1.MutatingWebhookConfiguration{}: {Field: fields.OneTermEqualSelector("metadata.name", name)},
	}
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	only := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == r.Name })
	b := ctrl.NewControllerManagedBy(mgr).
		Named("webhookca").
		For(&admissionregv1.MutatingWebhookConfiguration{}, builder.WithPredicates(only))
	if r.Changed != nil {
		b = b.WatchesRawSource(source.Channel(r.Changed, handler.EnqueueRequestsFromMapFunc(
			func(context.Context, client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: r.Name}}}
			})))
	}
	return b.Complete(r)
}

// Reconcile patches the caBundle of each webhook that does not hold CA().
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	ca := r.CA()
	if ca == "" {
		return ctrl.Result{}, nil
	}
	var wh admissionregv1.MutatingWebhookConfiguration
	err := r.Client.Get(ctx, types.NamespacedName{Name: r.Name}, &wh)
	if apierrors.IsNotFound(err) {
		// Not installed (yet): its creation brings us back.
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	patch := Patch(&wh, []byte(ca))
	if patch == nil {
		return ctrl.Result{}, nil
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Patch(ctx, &wh, client.RawPatch(types.JSONPatchType, data), client.FieldOwner("tandem-injector")); err != nil {
		// A failed test (the configuration changed since it was read) is
		// retried too, on what it has become.
		return ctrl.Result{}, fmt.Errorf("writing the CA into MutatingWebhookConfiguration %s: %w", r.Name, err)
	}
	log.FromContext(ctx).Info("wrote the serving certificate's CA into the webhook configuration", "mutatingWebhookConfiguration", r.Name, "webhooks", len(patch)/2)
	return ctrl.Result{}, nil
}

// Op is one operation of a JSON patch (RFC 6902).
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Patch returns the JSON patch that sets the caBundle of every webhook of
// wh that does not hold ca, each preceded by a test of that webhook's
// name; nil when all hold it.
func Patch(wh *admissionregv1.MutatingWebhookConfiguration, ca []byte) []Op {
	var ops []Op
	for i, w := range wh.Webhooks {
		if string(w.ClientConfig.CABundle) == string(ca) {
			continue
		}
		at := "/webhooks/" + strconv.Itoa(i)
		// caBundle is []byte: base64 in JSON.
		ops = append(ops,
			Op{Op: "test", Path: at + "/name", Value: w.Name},
			Op{Op: "add", Path: at + "/clientConfig/caBundle", Value: base64.StdEncoding.EncodeToString(ca)})
	}
	return ops
}
