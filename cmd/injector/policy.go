package main

import (
	"fmt"
	"io"

	"github.com/tandem-mesh/tandem/internal/policy"
)

func runPolicy(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy")
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: injector policy [flags]\n\n"+
			"Writes to standard output, as YAML, a MutatingAdmissionPolicy that injects\n"+
			"Tandem's sidecars as 'injector serve' would, a ValidatingAdmissionPolicy that\n"+
			"refuses what it refuses, their bindings, and the ConfigMap of defaults they\n"+
			"read, all from the same templates and flags. Apply them instead of the\n"+
			"webhook configuration (config/policy).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var f injectionFlags
	f.Bind(fs)
	native := fs.Bool("native-sidecar", true, "native sidecars unless a pod's tandem.dev/native-sidecar annotation says otherwise (every API server with admission policies supports them)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	in, err := f.Injector(*native)
	if err != nil {
		fmt.Fprintf(stderr, "injector policy: %v\n", err)
		return 2
	}
	p, err := policy.Compile(in)
	if err != nil {
		fmt.Fprintf(stderr, "injector policy: %v\n", err)
		return 1
	}
	out, err := p.YAML()
	if err != nil {
		fmt.Fprintf(stderr, "injector policy: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "injector policy: %v\n", err)
		return 1
	}
	return 0
}
