package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

// configCommand prints exactly what xds.Translate returns for the Services,
// EndpointSlices, TrafficPolicies, HTTPRoutes and GRPCRoutes of a file. Exit status: 0 when every
// object was translated, 1 when some were left out or not applied (the
// reasons go to stderr; the resources are printed all the same), 2 for bad
// flags or a file that cannot be read.
func configCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "file of Kubernetes objects: YAML documents or JSON, objects or Lists (- for stdin)")
	format := fs.String("o", "json", "output format: json or yaml")
	proxyless := fs.Bool("proxyless", false, "resources for proxyless gRPC clients instead of the Envoy sidecar")
	var local xds.Locality
	fs.StringVar(&local.Node, "node", "", "the Node the client runs on (internalTrafficPolicy Local, topology); unknown when empty")
	fs.StringVar(&local.Zone, "zone", "", "the zone the client runs in (topology); unknown when empty")
	fs.StringVar(&local.Namespace, "namespace", "", "the namespace the client runs in, whose consumer routes apply to it; when empty, only producer routes apply")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agent config -f FILE [-o json|yaml] [--proxyless] [--node NAME] [--zone ZONE] [--namespace NS]\n\n"+
			"Prints the listeners, routes, clusters and endpoints the agent serves for the\n"+
			"Services, EndpointSlices, TrafficPolicies, HTTPRoutes and GRPCRoutes in FILE;\n"+
			"other kinds are ignored. --node, --zone and --namespace say where the client\n"+
			"runs, as an agent learns it.\n"+
			"Exit status 1 when some objects were left out (reasons on stderr).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent config: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *file == "" {
		fmt.Fprintf(stderr, "agent config: -f is required: a file of Kubernetes objects, or - for stdin\n")
		return 2
	}
	if *format != "json" && *format != "yaml" {
		fmt.Fprintf(stderr, "agent config: -o %q is not an output format; use json or yaml\n", *format)
		return 2
	}
	mode := xds.Sidecar
	if *proxyless {
		mode = xds.Proxyless
	}

	var r io.Reader = os.Stdin
	source := "stdin"
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintf(stderr, "agent config: %v\n", err)
			return 2
		}
		defer f.Close()
		r, source = f, *file
	}
	in, skipped, err := objects.Read(r, source)
	if err != nil {
		fmt.Fprintf(stderr, "agent config: %v\n", err)
		return 2
	}
	for _, s := range skipped {
		fmt.Fprintf(stderr, "agent config: %s\n", s)
	}

	in.Local = local
	res, errs := xds.Translate(in, mode)
	out, err := res.JSON()
	if err == nil && *format == "yaml" {
		out, err = res.YAML()
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent config: rendering: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "agent config: %v\n", err)
		return 1
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "agent config: %v\n", e)
	}
	if len(errs) > 0 {
		return 1
	}
	return 0
}
