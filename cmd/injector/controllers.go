package main

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
	"github.com/tandem-mesh/tandem/webhook/admit"
)

// The webhook reads namespaces' labels and annotations.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// setupManager adds everything `injector serve` runs to its manager: the
// injection webhook, discovery, then the controllers. Adding a component is a line here.
func setupManager(mgr ctrl.Manager, o *serveOptions) error {
	// Without the webhook (admission policies inject), the manager starts
	// no webhook server: it does so only when asked for it.
	if o.webhook {
		in, err := o.injector(o.nativeResolved)
		if err != nil {
			return fmt.Errorf("setting up the injection webhook: %w", err)
		}
		mgr.GetWebhookServer().Register(admit.Path, &admit.Handler{
			Injector:   in,
			Namespaces: admit.ClientNamespaces{Reader: mgr.GetClient(), Live: mgr.GetAPIReader()},
			Log:        mgr.GetLogger().WithName("webhook"),
		})
	}
	if o.discovery {
		if err := setupDiscovery(mgr, o); err != nil {
			return fmt.Errorf("setting up discovery: %w", err)
		}
	}
	if err := (&agentrbac.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the agent RBAC controller: %w", err)
	}
	if err := (&policystatus.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrafficPolicy status controller: %w", err)
	}
	return nil
}
