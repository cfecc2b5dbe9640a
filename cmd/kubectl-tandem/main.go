// Command kubectl-tandem is Tandem's operator CLI, run as a kubectl plugin
// (`kubectl tandem ...`): check whether Tandem can be installed and whether
// an install is sound, show every injected pod's sidecars and agent, and
// what one agent serves. It reaches the cluster through the API server
// only, with the caller's own credentials (the kubeconfig flags of
// kubectl), so RBAC decides what it may show. inject, uninject and
// version work offline, as the injector's do.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/podconn"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func main() {
	os.Exit(run(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}

// exitError ends the command with a code, its message already printed
// (or none to print).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// run runs the command line args and returns the exit code: 0, 1 when a
// check fails or the command could not do its job, 2 for a bad command
// line.
func run(args []string, streams genericiooptions.IOStreams) int {
	root := newRoot(streams)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(streams.ErrOut, "kubectl tandem:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(streams.ErrOut, "kubectl tandem:", err)
	if strings.HasPrefix(err.Error(), "unknown command") {
		return 2
	}
	return 1
}

// args checks the number of arguments; a wrong one is a bad command line.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("%s %s: %v", c.Root().Annotations[cobra.CommandDisplayNameAnnotation], c.Name(), err)}
		}
		return nil
	}
}

// global are the flags every command shares.
type global struct {
	streams genericiooptions.IOStreams
	kube    *genericclioptions.ConfigFlags
	// tandemNamespace is the install's namespace.
	tandemNamespace string
}

func newRoot(streams genericiooptions.IOStreams) *cobra.Command {
	g := &global{streams: streams, kube: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:         "kubectl-tandem",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl tandem"},
		Short:       "Check, inspect and inject Tandem's per-request load balancing",
		Long: "kubectl tandem checks whether Tandem can be installed (check --pre) and whether an install is\n" +
			"sound (check), shows every injected pod's sidecars and agent (status) and what one agent\n" +
			"serves (config), through the API server with your credentials. inject, uninject and\n" +
			"version work offline.",
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	g.kube.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&g.tandemNamespace, "tandem-namespace", wellknown.DefaultNamespace, "namespace Tandem is installed in")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: 2, msg: fmt.Sprintf("%v (see kubectl tandem %s --help)", err, c.Name())}
	})
	root.AddCommand(g.checkCommand(), g.statusCommand(), g.configCommand(), offlineCommand("inject", streams), offlineCommand("uninject", streams), g.versionCommand())
	return root
}

// clients are what the cluster commands use.
type clients struct {
	cfg     *rest.Config
	kube    kubernetes.Interface
	forward *podconn.Forwarder
}

func (g *global) clients() (*clients, error) {
	cfg, err := g.kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f, err := podconn.New(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{cfg: cfg, kube: kube, forward: f}, nil
}

// namespace is the namespace of -n, else the kubeconfig context's.
func (g *global) namespace() (string, error) {
	ns, _, err := g.kube.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// outputFlag adds -o with the formats a command accepts beyond the table.
func outputFlag(c *cobra.Command, o *string, formats string) {
	c.Flags().StringVarP(o, "output", "o", "", "output format: "+formats+" (default: a table)")
}

// checkOutput refuses a format the command does not print.
func checkOutput(o string, accepted ...string) error {
	if o == "" {
		return nil
	}
	for _, a := range accepted {
		if o == a {
			return nil
		}
	}
	return &exitError{code: 2, msg: fmt.Sprintf("-o %q: accepted: %v", o, accepted)}
}

// printData writes v as JSON or YAML.
func printData(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}
