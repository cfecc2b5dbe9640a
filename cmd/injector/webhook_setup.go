package main

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tandem-mesh/tandem/webhook"
)

// The webhook reads namespaces' labels and annotations.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

func init() {
	addToManager("the injection webhook", func(mgr ctrl.Manager, o *serveOptions) error {
		if !o.webhook {
			// The manager starts its webhook server only when asked for it.
			return nil
		}
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
