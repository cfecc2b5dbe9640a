package main

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/controller/policyparams"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/webhook"
	"github.com/tandem-mesh/tandem/webhook/admit"
)

// The webhook reads namespaces' labels and annotations.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// setupManager adds everything `injector serve` runs to its manager: the
// injection webhook, discovery, then the controllers. Adding a component is a line here.
func setupManager(mgr ctrl.Manager, o *serveOptions, certs *servingCerts) error {
	// Without the webhook (admission policies inject), the manager starts
	// no webhook server: it does so only when asked for it.
	var in *webhook.Injector
	if o.webhook {
		var err error
		if in, err = o.Injector(o.nativeResolved); err != nil {
			return fmt.Errorf("setting up the injection webhook: %w", err)
		}
		mgr.GetWebhookServer().Register(admit.Path, &admit.Handler{
			Injector:   in,
			Namespaces: admit.ClientNamespaces{Reader: mgr.GetClient(), Live: mgr.GetAPIReader()},
			Log:        mgr.GetLogger().WithName("webhook"),
		})
	}
	if certs != nil {
		// Every replica keeps its certificate current: no leader needed.
		if err := mgr.Add(manager.RunnableFunc(certs.keep)); err != nil {
			return err
		}
	}
	var disc *discovery.Server
	if o.discovery {
		var err error
		if disc, err = setupDiscovery(mgr, o, certs); err != nil {
			return fmt.Errorf("setting up discovery: %w", err)
		}
	}
	if err := setupStatus(mgr, o, disc, in); err != nil {
		return fmt.Errorf("setting up the status endpoint: %w", err)
	}
	if o.policyParams != "" {
		if err := setupPolicyParams(mgr, o, certs); err != nil {
			return fmt.Errorf("setting up the admission policies' parameters: %w", err)
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

// setupPolicyParams publishes discovery's address and CA for the
// admission policies; without discovery it withdraws them.
func setupPolicyParams(mgr ctrl.Manager, o *serveOptions, certs *servingCerts) error {
	r := &policyparams.Reconciler{
		Client: mgr.GetClient(), Namespace: o.InjectorNamespace, Name: o.policyParams,
		Address: o.Defaults.DiscoveryAddress, CA: func() string { return "" },
	}
	if o.discovery && certs != nil {
		r.CA = certs.ca
		if certs.caChanged != nil {
			events := make(chan event.GenericEvent)
			r.Changed = events
			if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
				for {
					select {
					case <-ctx.Done():
						return nil
					case <-certs.caChanged:
						select {
						case events <- event.GenericEvent{}:
						case <-ctx.Done():
							return nil
						}
					}
				}
			})); err != nil {
				return err
			}
		}
	}
	return r.SetupWithManager(mgr)
}
