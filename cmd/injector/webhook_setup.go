package main

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tandem-mesh/tandem/webhook"
)

// The webhook reads namespaces' labels and annotations.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// webhookSetup names the webhook's setup, which --webhook=false skips.
const webhookSetup = "the injection webhook"

func init() {
	addToManager(webhookSetup, func(mgr ctrl.Manager, o *serveOptions) error {
		in, err := o.injector(o.nativeResolved)
		if err != nil {
			return err
		}
		mgr.GetWebhookServer().Register(webhook.Path, &webhook.Handler{
			Injector:   in,
			Namespaces: webhook.ClientNamespaces{Reader: mgr.GetClient(), Live: mgr.GetAPIReader()},
			Log:        mgr.GetLogger().WithName("webhook"),
		})
		return nil
	})
}
