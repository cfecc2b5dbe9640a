package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tandem-mesh/tandem/internal/clustercheck"
)

func (g *global) checkCommand() *cobra.Command {
	var pre bool
	var output string
	c := &cobra.Command{
		Use:   "check [--pre]",
		Short: "Check whether Tandem can be installed (--pre), or whether the install is sound",
		Long: "check --pre: the API server's version, the injection modes it serves (webhook, admission\n" +
			"policies), your permissions for an install, cert-manager, the nodes' CNI.\n" +
			"check: the CRDs, the injector, the webhook's caBundle against the certificate it serves (and\n" +
			"its expiry) or the admission policies and their bindings, discovery, the CNI plugin in CNI\n" +
			"mode, the labeled namespaces. Every check says what it found and what to do; the exit\n" +
			"status is 1 when one fails.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			cl, err := g.clients()
			if err != nil {
				return err
			}
			env := &clustercheck.Env{Kube: cl.kube, Forward: cl.forward, Namespace: g.tandemNamespace}
			var rs []clustercheck.Result
			if pre {
				rs = clustercheck.Pre(cmd.Context(), env)
			} else {
				rs = clustercheck.Installed(cmd.Context(), env)
			}
			if output != "" {
				err = printData(g.streams.Out, output, map[string]any{"checks": rs, "ok": !clustercheck.Failed(rs)})
			} else {
				err = printChecks(g.streams.Out, rs)
			}
			if err != nil {
				return err
			}
			if clustercheck.Failed(rs) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&pre, "pre", false, "check whether Tandem can be installed, rather than the install")
	outputFlag(c, &output, "json or yaml")
	return c
}

func printChecks(w io.Writer, rs []clustercheck.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	failed, warned := 0, 0
	for _, r := range rs {
		mark := "ok"
		switch {
		case !r.OK:
			mark = "FAIL"
			failed++
		case r.Warning:
			mark = "warn"
			warned++
		}
		fmt.Fprintf(tw, "[%s]\t%s\t%s\n", mark, r.Name, r.Message)
		if r.Hint != "" && (!r.OK || r.Warning) {
			fmt.Fprintf(tw, "\t\t  -> %s\n", r.Hint)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var summary []string
	if failed > 0 {
		summary = append(summary, fmt.Sprintf("%d failed", failed))
	}
	if warned > 0 {
		summary = append(summary, fmt.Sprintf("%d to look at", warned))
	}
	if len(summary) == 0 {
		summary = append(summary, "all passed")
	}
	_, err := fmt.Fprintf(w, "%d checks: %s\n", len(rs), strings.Join(summary, ", "))
	return err
}
