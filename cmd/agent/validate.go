//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tandem-mesh/tandem/internal/capture"
)

// validateTimeout bounds the one test connection; a redirect answers at
// once, since the connection never leaves the pod.
const validateTimeout = 5 * time.Second

// runValidate takes the same capture flags as `agent init`: in CNI mode
// the node's plugin reads them from this container's arguments and
// installs what they say, and this command checks that it did.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := capture.AddFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agent validate [flags]\n\n"+
			"Checks that outbound TCP of this network namespace is redirected to the\n"+
			"proxy port, as the Tandem CNI plugin arranges for pods in CNI mode. Runs\n"+
			"without privileges, as any user but the proxy's.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlagsOnly(fs, args, stderr); done {
		return code
	}
	cfg, err := flags.Config()
	if err != nil {
		fmt.Fprintf(stderr, "agent validate: %v\n", err)
		return 2
	}
	dst, err := capture.VerifyRedirect(cfg, validateTimeout)
	if errors.Is(err, capture.ErrNotRedirected) {
		fmt.Fprintf(stderr, "agent validate: %v.\n"+
			"The Tandem CNI plugin (tandem-cni) did not install the capture rules in this pod's network namespace: "+
			"it is missing on this node, or not in the node's CNI configuration. Install it (config/cni), "+
			"or inject this pod in init mode (annotation tandem.dev/capture=init).\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent validate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "outbound traffic is redirected: a connection to %s arrived on port %d\n", dst, cfg.ProxyPort)
	return 0
}
