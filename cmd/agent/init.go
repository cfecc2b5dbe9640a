//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/tandem-mesh/tandem/internal/capture"
)

// runInit parses every flag before touching the kernel, so bad input (exit
// 2) never leaves a half-applied ruleset behind.
func runInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := capture.AddFlags(fs)
	dryRun := fs.Bool("dry-run", false, "print the ruleset in nft syntax and change nothing")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agent init [flags]\n\n"+
			"Redirects outbound TCP of this network namespace to the proxy, except the\n"+
			"proxy's own traffic, loopback, DNS and the exclusions below. IPv4 and IPv6.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlagsOnly(fs, args, stderr); done {
		return code
	}

	cfg, err := flags.Config()
	if err != nil {
		fmt.Fprintf(stderr, "agent init: %v\n", err)
		return 2
	}
	rs, err := capture.Build(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "agent init: %v\n", err)
		return 2
	}
	if *dryRun {
		fmt.Fprint(stdout, rs)
		return 0
	}
	if err := rs.Apply(); err != nil {
		fmt.Fprintf(stderr, "agent init: %v\n", err)
		return 1
	}
	// Read back, so the log proves what the kernel holds, not what was sent.
	n, found, err := capture.Installed()
	if err == nil && (!found || n != len(rs.Rules)) {
		err = fmt.Errorf("the kernel holds %d rules in table inet %s (found: %v), want %d", n, rs.Table, found, len(rs.Rules))
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent init: checking the installed rules: %v\n", err)
		return 1
	}
	// The init container's log then shows what the pod runs with.
	fmt.Fprint(stdout, rs)
	fmt.Fprintf(stdout, "# installed: table inet %s, %d rules read back from the kernel\n", rs.Table, n)
	return 0
}
