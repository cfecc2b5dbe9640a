package main

import (
	"context"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/controller/policyparams"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
	"github.com/tandem-mesh/tandem/internal/controller/routestatus"
	"github.com/tandem-mesh/tandem/internal/controller/webhookca"
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
	if o.webhookConfiguration != "" {
		r := &webhookca.Reconciler{Client: mgr.GetClient(), Name: o.webhookConfiguration, CA: certs.ca}
		var err error
		if r.Changed, err = caEvents(mgr, certs); err != nil {
			return err
		}
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the webhook configuration's CA: %w", err)
		}
	}
	if err := (&agentrbac.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the agent RBAC controller: %w", err)
	}
	policies := &policystatus.Reconciler{Client: mgr.GetClient()}
	if err := policies.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrafficPolicy status controller: %w", err)
	}
	if err := setupRouteStatus(mgr, policies); err != nil {
		return fmt.Errorf("setting up the route status controllers: %w", err)
	}
	return nil
}

// routeRecheck is how often the injector asks whether the API server
// serves the Gateway API routes, until it does.
const routeRecheck = 30 * time.Second

// setupRouteStatus writes the status of HTTPRoutes and GRPCRoutes, and
// makes the routes part of TrafficPolicy status, once their CRDs are
// installed: at start, or whenever they are.
func setupRouteStatus(mgr ctrl.Manager, policies *policystatus.Reconciler) error {
	return routestatus.Setup(mgr, routeRecheck, func() error { return policies.WatchRoutes(mgr) })
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
		var err error
		if r.Changed, err = caEvents(mgr, certs); err != nil {
			return err
		}
	}
	return r.SetupWithManager(mgr)
}

// caEvents returns a channel of an event each time the serving CA changes,
// for a controller to watch (nil when the CA never changes).
func caEvents(mgr ctrl.Manager, certs *servingCerts) (<-chan event.GenericEvent, error) {
	if certs.onCAChange == nil {
		return nil, nil
	}
	changed := certs.onCAChange()
	events := make(chan event.GenericEvent)
	return events, mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				select {
				case events <- event.GenericEvent{}:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}))
}
