package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tandem-mesh/tandem/internal/injectcmd"
	"github.com/tandem-mesh/tandem/internal/installation"
	"github.com/tandem-mesh/tandem/internal/version"
)

// offlineCommand runs the injector's inject or uninject, with its flags:
// they edit manifests, byte for byte, and print them as they came (YAML
// or JSON), so -o does not apply.
func offlineCommand(name string, streams genericiooptions.IOStreams) *cobra.Command {
	short := map[string]string{
		"inject":   "Add Tandem's sidecars to the pods and pod templates of manifests (offline)",
		"uninject": "Remove the sidecars from manifests injected before (offline)",
	}[name]
	return &cobra.Command{
		Use:                name + " -f FILE|- [flags]",
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			run := injectcmd.Inject
			if name == "uninject" {
				run = injectcmd.Uninject
			}
			if code := run("kubectl tandem", args, streams.In, streams.Out, streams.ErrOut); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}

// versions is what version prints.
type versions struct {
	Client   string           `json:"client"`
	Injector *injectorVersion `json:"injector,omitempty"`
}

type injectorVersion struct {
	Image    string            `json:"image"`
	Replicas map[string]string `json:"replicas,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func (g *global) versionCommand() *cobra.Command {
	var client bool
	var output string
	c := &cobra.Command{
		Use:   "version [--client]",
		Short: "Print the version of kubectl tandem and of the installed injector",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			v := versions{Client: version.Number()}
			if !client {
				v.Injector = g.injectorVersion(cmd.Context())
			}
			if output != "" {
				return printData(g.streams.Out, output, v)
			}
			fmt.Fprintln(g.streams.Out, "client:", version.String())
			if in := v.Injector; in != nil {
				switch {
				case in.Error != "":
					fmt.Fprintln(g.streams.Out, "injector:", in.Error)
				default:
					fmt.Fprintln(g.streams.Out, "injector image:", in.Image)
					for _, pod := range slices.Sorted(maps.Keys(in.Replicas)) {
						fmt.Fprintf(g.streams.Out, "injector %s: %s\n", pod, in.Replicas[pod])
					}
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&client, "client", false, "only this program's version, offline")
	outputFlag(c, &output, "json or yaml")
	return c
}

func (g *global) injectorVersion(ctx context.Context) *injectorVersion {
	cl, err := g.clients()
	if err != nil {
		return &injectorVersion{Error: err.Error()}
	}
	in, err := installation.Find(ctx, cl.kube, g.tandemNamespace)
	if err != nil {
		if errors.Is(err, installation.ErrNotInstalled) {
			return &injectorVersion{Error: "not installed: " + err.Error()}
		}
		return &injectorVersion{Error: err.Error()}
	}
	out := &injectorVersion{Image: in.Image(), Replicas: map[string]string{}}
	for _, p := range in.Running() {
		r, s, err := installation.Replica(ctx, cl.forward, &p)
		if err != nil {
			out.Replicas[p.Name] = "unknown: " + err.Error()
			continue
		}
		s.Close()
		out.Replicas[p.Name] = r.Version
	}
	return out
}
