package main

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/controller/policystatus"
)

func init() {
	addToManager("the agent RBAC controller", func(mgr ctrl.Manager, _ *serveOptions) error {
		return (&agentrbac.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
	})
	addToManager("the TrafficPolicy status controller", func(mgr ctrl.Manager, _ *serveOptions) error {
		return (&policystatus.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
	})
}
