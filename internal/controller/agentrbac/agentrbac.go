// Package agentrbac keeps the agent's read permissions in step with the
// namespaces that have injection turned on: every namespace labeled
// tandem.dev/inject=enabled gets a ClusterRoleBinding of the ClusterRole
// tandem-agent to its service accounts, and loses it when the label goes.
//
// A ClusterRoleBinding (not a RoleBinding) because an agent must see the
// Services and EndpointSlices of every namespace its pod may call.
package agentrbac

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// The injector may bind the agent's role and nothing else: `bind` is limited
// to that one ClusterRole, so a compromised injector cannot grant more.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterrolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=tandem-agent

// Reconciler reconciles one namespace's agent binding per request.
type Reconciler struct {
	Client client.Client
}

// BindingName is the name of the ClusterRoleBinding serving namespace ns.
func BindingName(ns string) string { return wellknown.AgentBindingPrefix + ns }

// CacheByObject limits the manager's ClusterRoleBinding cache to the
// bindings this controller owns, so a cluster's other bindings cost nothing.
func CacheByObject() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&rbacv1.ClusterRoleBinding{}: {
			Label: labels.SelectorFromSet(labels.Set{wellknown.ManagedByLabel: wellknown.ManagedByInjector}),
		},
	}
}

// SetupWithManager registers the controller: namespaces drive it, and a
// binding edited or deleted by hand is put back.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentrbac").
		For(&corev1.Namespace{}).
		Watches(&rbacv1.ClusterRoleBinding{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				ns := o.GetLabels()[wellknown.AgentNamespaceLabel]
				if ns == "" || o.GetLabels()[wellknown.ManagedByLabel] != wellknown.ManagedByInjector {
					return nil
				}
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: ns}}}
			})).
		Complete(r)
}

// Reconcile makes the binding of one namespace match its label.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nsName := req.Name
	var ns corev1.Namespace
	err := r.Client.Get(ctx, types.NamespacedName{Name: nsName}, &ns)
	switch {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, r.removeBinding(ctx, nsName)
	case err != nil:
		return ctrl.Result{}, err
	}
	if ns.DeletionTimestamp != nil || ns.Labels[wellknown.InjectLabel] != wellknown.InjectLabelEnabled {
		return ctrl.Result{}, r.removeBinding(ctx, nsName)
	}
	return ctrl.Result{}, r.ensureBinding(ctx, nsName)
}

func desiredBinding(ns string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name: BindingName(ns),
			Labels: map[string]string{
				wellknown.ManagedByLabel:      wellknown.ManagedByInjector,
				wellknown.AgentNamespaceLabel: ns,
			},
		},
		RoleRef: rbacv1.RoleRef{
			APIGroup: rbacv1.GroupName,
			Kind:     "ClusterRole",
			Name:     wellknown.AgentClusterRole,
		},
		Subjects: []rbacv1.Subject{{
			APIGroup: rbacv1.GroupName,
			Kind:     rbacv1.GroupKind,
			Name:     "system:serviceaccounts:" + ns,
		}},
	}
}

func (r *Reconciler) ensureBinding(ctx context.Context, ns string) error {
	want := desiredBinding(ns)
	var have rbacv1.ClusterRoleBinding
	err := r.Client.Get(ctx, types.NamespacedName{Name: want.Name}, &have)
	if apierrors.IsNotFound(err) {
		log.FromContext(ctx).Info("granting agent permissions", "namespace", ns, "binding", want.Name)
		return r.Client.Create(ctx, want)
	}
	if err != nil {
		return err
	}
	// roleRef cannot be changed in place; a binding that names another role
	// is replaced on the next pass.
	if have.RoleRef != want.RoleRef {
		return r.Client.Delete(ctx, &have, client.Preconditions{UID: &have.UID})
	}
	if equality.Semantic.DeepEqual(have.Subjects, want.Subjects) && labelsContain(have.Labels, want.Labels) {
		return nil
	}
	have.Subjects = want.Subjects
	if have.Labels == nil {
		have.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		have.Labels[k] = v
	}
	log.FromContext(ctx).Info("restoring agent binding", "namespace", ns, "binding", want.Name)
	return r.Client.Update(ctx, &have)
}

func (r *Reconciler) removeBinding(ctx context.Context, ns string) error {
	var have rbacv1.ClusterRoleBinding
	err := r.Client.Get(ctx, types.NamespacedName{Name: BindingName(ns)}, &have)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if have.Labels[wellknown.ManagedByLabel] != wellknown.ManagedByInjector {
		// Someone else's object under our name: never delete it.
		log.FromContext(ctx).Info("leaving a ClusterRoleBinding the injector does not manage", "binding", have.Name)
		return nil
	}
	log.FromContext(ctx).Info("revoking agent permissions", "namespace", ns, "binding", have.Name)
	err = r.Client.Delete(ctx, &have, client.Preconditions{UID: &have.UID})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func labelsContain(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
