// Command injector serves Tandem's mutating admission webhook (the default,
// `injector serve`) and injects manifests offline (`injector inject -f FILE`,
// undone by `injector uninject -f FILE`).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand; run returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands are the subcommands, in the order usage lists them.
func commands() []command {
	return []command{
		{name: "inject", summary: "add the sidecars to the pods and pod templates of manifests (offline)", run: runInject},
		{name: "policy", summary: "print the injection as admission policies (no webhook; Kubernetes 1.36+)", run: runPolicy},
		{name: "serve", summary: "serve the admission webhook and the injector's controllers (default)", run: runServe},
		{name: "uninject", summary: "remove the sidecars from manifests injected before (offline)", run: runUninject},
		{name: "version", summary: "print the version", run: runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: injector [command] [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nWithout a command, injector serves the webhook (flags of 'serve').\n")
	fmt.Fprintf(w, "Run 'injector <command> -h' for the flags of a command.\n")
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func runMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		usage(stdout)
		return 0
	}
	if name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args, stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "injector: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}
