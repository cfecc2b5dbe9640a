// Command agent is Tandem's per-pod helper: `agent init` installs the
// traffic-capture rules, `agent run` feeds the local Envoy over xDS, and
// `agent config` prints the xDS resources it would serve for objects in a file.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

// command is one subcommand; run returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands are the subcommands, in the order usage lists them.
func commands() []command {
	return []command{
		{name: "config", summary: "print the xDS resources served for the Kubernetes objects in a file", run: configCommand},
		{name: "init", summary: "install the traffic-capture rules in this network namespace (init container)", run: runInit},
		{name: "run", summary: "watch the cluster and serve xDS to the pod's Envoy (or proxyless gRPC)", run: runCommand},
		{name: "validate", summary: "check, unprivileged, that outbound traffic is redirected (init container in CNI mode)", run: runValidate},
		{name: "version", summary: "print the version", run: runVersion},
		{name: "wait", summary: "wait until the agent reports ready (postStart hook without native sidecars)", run: waitCommand},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: agent <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'agent <command> -h' for the flags of a command.\n")
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "agent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// parseFlagsOnly parses the flags of a command that takes no arguments;
// done says to stop with code (0 after -h, 2 for bad input).
func parseFlagsOnly(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q: it takes flags only\n", fs.Name(), fs.Arg(0))
		return 2, true
	}
	return 0, false
}
