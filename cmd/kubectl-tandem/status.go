package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/meshstatus"
	"github.com/tandem-mesh/tandem/internal/staleness"
)

func (g *global) statusCommand() *cobra.Command {
	var all bool
	var output string
	c := &cobra.Command{
		Use:   "status [-n NAMESPACE | -A]",
		Short: "Show every injected pod: its sidecars against what renders now, its agent, source and configuration",
		Long: "status lists the injected pods of a namespace (-A: all) with their template and layout,\n" +
			"whether their sidecars are what the installed injection renders now (stale: restart the\n" +
			"workload), the agent's version, where its configuration comes from (discovery, or the API\n" +
			"server while discovery is unreachable), what was last sent and accepted (discovery to the\n" +
			"agent, the agent to its proxy) and any configuration refused, with the refuser's error.\n" +
			"Discovery's records come from every injector replica through port-forward (RBAC: create\n" +
			"pods/portforward in Tandem's namespace); agents discovery does not know are asked\n" +
			"themselves (pods/portforward in theirs).",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json", "yaml", "wide"); err != nil {
				return err
			}
			cl, err := g.clients()
			if err != nil {
				return err
			}
			ns := ""
			if !all {
				if ns, err = g.namespace(); err != nil {
					return err
				}
			}
			rep, err := meshstatus.Gather(cmd.Context(), meshstatus.Options{Kube: cl.kube, Forward: cl.forward, TandemNamespace: g.tandemNamespace, Namespace: ns})
			if err != nil {
				return err
			}
			for _, w := range rep.Warnings {
				fmt.Fprintln(g.streams.ErrOut, "warning:", w)
			}
			switch output {
			case "json", "yaml":
				return printData(g.streams.Out, output, rep)
			}
			if len(rep.Pods) == 0 {
				where := "namespace " + ns
				if all {
					where = "any namespace"
				}
				_, err := fmt.Fprintf(g.streams.Out, "No injected pods in %s.\n", where)
				return err
			}
			return printStatus(g.streams.Out, rep, output == "wide")
		},
	}
	c.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	outputFlag(c, &output, "json, yaml or wide (the versions sent and accepted)")
	return c
}

func printStatus(w io.Writer, rep *meshstatus.Report, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "NAMESPACE\tPOD\tTEMPLATE\tMODE\tSIDECARS\tAGENT\tSOURCE\tDISCOVERY\tPROXY"
	if wide {
		head += "\tREPLICA\tDISCOVERY SENT/ACKED\tPROXY SENT/ACKED"
	}
	fmt.Fprintln(tw, head)
	var notes []string
	for _, p := range rep.Pods {
		mode := p.Layout
		if p.Capture != "" {
			mode += "/" + p.Capture
		}
		agent := "-"
		if p.Agent != nil {
			agent = p.Agent.Version
		}
		row := []string{p.Namespace, p.Name, dash(p.Template), dash(mode), p.Sidecars, agent, p.Source, discoveryState(p), proxyState(p)}
		if wide {
			row = append(row, dash(p.Replica), discoverySent(p), proxySent(p))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		name := p.Namespace + "/" + p.Name
		if p.Sidecars == staleness.Stale {
			notes = append(notes, fmt.Sprintf("%s: sidecars stale, restart its workload: %s", name, p.SidecarsReason))
		} else if p.Sidecars == staleness.Unknown && p.SidecarsReason != "" {
			notes = append(notes, fmt.Sprintf("%s: sidecars not compared: %s", name, p.SidecarsReason))
		}
		for _, r := range p.Refused {
			notes = append(notes, fmt.Sprintf("%s: %s", name, r))
		}
		if p.Unreachable != "" {
			notes = append(notes, fmt.Sprintf("%s: agent not asked: %s", name, p.Unreachable))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// discoveryState is the state of discovery's latest Service response to
// the agent.
func discoveryState(p meshstatus.Pod) string {
	if p.Discovery == nil {
		return "-"
	}
	for _, e := range p.Discovery.Exchanges {
		if e.Type == "Service" {
			return e.State()
		}
	}
	return agentstatus.StateNotSent
}

// proxyState sums up the proxy's answers: synced when every type's latest
// response was accepted, else the worst state and its types.
func proxyState(p meshstatus.Pod) string {
	if p.Agent == nil {
		return "-"
	}
	if len(p.Agent.Proxies) == 0 {
		if p.Agent.Mode == "proxyless" {
			return "no client"
		}
		return "not connected"
	}
	byState := map[string][]string{}
	for _, px := range p.Agent.Proxies {
		for _, e := range px.Exchanges {
			byState[e.State()] = append(byState[e.State()], e.Type)
		}
	}
	for _, s := range []string{agentstatus.StateRejected, agentstatus.StatePending, agentstatus.StateNotSent} {
		if ts := byState[s]; len(ts) > 0 {
			sort.Strings(ts)
			return s + ":" + strings.Join(unique(ts), ",")
		}
	}
	return agentstatus.StateSynced
}

func unique(s []string) []string {
	out := s[:0:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func discoverySent(p meshstatus.Pod) string {
	if p.Discovery == nil {
		return "-"
	}
	var parts []string
	for _, e := range p.Discovery.Exchanges {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", e.Type, dash(e.Sent), dash(e.Acked)))
	}
	return dash(strings.Join(parts, " "))
}

func proxySent(p meshstatus.Pod) string {
	if p.Agent == nil {
		return "-"
	}
	var parts []string
	for _, px := range p.Agent.Proxies {
		for _, e := range px.Exchanges {
			parts = append(parts, fmt.Sprintf("%s=%s/%s", e.Type, dash(e.Sent), dash(e.Acked)))
		}
	}
	return dash(strings.Join(parts, " "))
}
