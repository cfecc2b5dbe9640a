package main

import (
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/meshstatus"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func (g *global) configCommand() *cobra.Command {
	var kinds []string
	var output string
	c := &cobra.Command{
		Use:   "config POD [--kind listeners|routes|clusters|endpoints]",
		Short: "Print the xDS configuration the pod's agent serves now (to Envoy, or to the proxyless app)",
		Long: "config asks the agent of POD, through the API server's port-forward (RBAC: create\n" +
			"pods/portforward in its namespace), for the listeners, routes, clusters and endpoints it\n" +
			"serves now, in the JSON of `agent config` (-o yaml: as YAML).",
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			cl, err := g.clients()
			if err != nil {
				return err
			}
			ns, err := g.namespace()
			if err != nil {
				return err
			}
			pod, err := cl.kube.CoreV1().Pods(ns).Get(cmd.Context(), args[0], metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				return fmt.Errorf("no pod %s in namespace %s", args[0], ns)
			case err != nil:
				return err
			}
			if _, ok := pod.Annotations[wellknown.StatusAnnotation]; !ok {
				return fmt.Errorf("pod %s/%s is not injected (it has no %s annotation): it has no agent", ns, pod.Name, wellknown.StatusAnnotation)
			}
			b, err := meshstatus.AgentConfig(cmd.Context(), cl.forward, ns, pod.Name, kinds)
			if err != nil {
				return err
			}
			if output == "yaml" {
				if b, err = yaml.JSONToYAML(b); err != nil {
					return err
				}
			}
			_, err = g.streams.Out.Write(b)
			return err
		},
	}
	c.Flags().StringSliceVar(&kinds, "kind", nil, "only these: listeners, routes, clusters, endpoints (default: all)")
	outputFlag(c, &output, "json (the default) or yaml")
	return c
}
