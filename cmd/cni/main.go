//go:build linux

// Command tandem-cni is Tandem's chained CNI plugin when the container
// runtime runs it (CNI_COMMAND set), and its node installer otherwise
// (`tandem-cni install`, the DaemonSet's command).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tandem-mesh/tandem/internal/cniplugin"
)

func main() {
	if os.Getenv("CNI_COMMAND") != "" {
		skel.PluginMainFuncs(cniplugin.Plugin{}.Funcs(), cniplugin.Versions,
			"tandem-cni: installs Tandem's traffic capture in the network namespace of pods injected in CNI mode")
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "install" {
		return runInstall(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "Usage:\n"+
		"  tandem-cni install [flags]   install the plugin on this node and keep it installed until SIGTERM\n"+
		"Run by a container runtime (CNI_COMMAND set), tandem-cni is the CNI plugin itself.\n")
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		return 0
	}
	return 2
}
