//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// runInit parses every flag before touching the kernel, so bad input (exit
// 2) never leaves a half-applied ruleset behind.
func runInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proxyPort := fs.String("proxy-port", strconv.Itoa(wellknown.ProxyOutboundPort), "`port` of the proxy's capture listener (1-65535)")
	proxyUID := fs.String("proxy-uid", strconv.Itoa(wellknown.ProxyUID), "`UID` of the proxy; its connections are never redirected")
	proxyGID := fs.String("proxy-gid", strconv.Itoa(wellknown.ProxyGID), "`GID` of the proxy; its connections are never redirected")
	excludePorts := fs.String("exclude-outbound-ports", "", "destination `ports` left alone, e.g. 8080,9090")
	excludeCIDRs := fs.String("exclude-outbound-cidrs", "", "destination `CIDRs` left alone, e.g. 10.0.0.0/8,fd00::/8")
	includeCIDRs := fs.String("include-outbound-cidrs", "", "when set, only these destination `CIDRs` are captured, e.g. 10.96.0.0/12 (\"*\" means all)")
	dryRun := fs.Bool("dry-run", false, "print the ruleset in nft syntax and change nothing")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agent init [flags]\n\n"+
			"Redirects outbound TCP of this network namespace to the proxy, except the\n"+
			"proxy's own traffic, loopback, DNS and the exclusions below. IPv4 and IPv6.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent init: unexpected argument %q: init takes flags only\n", fs.Arg(0))
		return 2
	}

	cfg, err := initConfig(*proxyPort, *proxyUID, *proxyGID, *excludePorts, *excludeCIDRs, *includeCIDRs)
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

// initConfig turns the flag values into a capture.Config; each error names
// the flag and its value.
func initConfig(proxyPort, proxyUID, proxyGID, excludePorts, excludeCIDRs, includeCIDRs string) (capture.Config, error) {
	var cfg capture.Config
	var err error
	bad := func(name, value string, err error) error {
		return fmt.Errorf("invalid --%s %q: %v", name, value, err)
	}
	if cfg.ProxyPort, err = capture.ParsePort(proxyPort); err != nil {
		return cfg, bad("proxy-port", proxyPort, err)
	}
	if cfg.ProxyUID, err = parseID(proxyUID); err != nil {
		return cfg, bad("proxy-uid", proxyUID, err)
	}
	if cfg.ProxyGID, err = parseID(proxyGID); err != nil {
		return cfg, bad("proxy-gid", proxyGID, err)
	}
	if cfg.ExcludePorts, err = capture.ParsePorts(excludePorts); err != nil {
		return cfg, bad("exclude-outbound-ports", excludePorts, err)
	}
	if cfg.ExcludeCIDRs, err = capture.ParseCIDRs(excludeCIDRs); err != nil {
		return cfg, bad("exclude-outbound-cidrs", excludeCIDRs, err)
	}
	if cfg.IncludeCIDRs, err = capture.ParseCIDRs(includeCIDRs); err != nil {
		return cfg, bad("include-outbound-cidrs", includeCIDRs, err)
	}
	return cfg, nil
}

// parseID parses a numeric user or group ID.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric ID from 0 to 4294967295", s)
	}
	return uint32(n), nil
}
