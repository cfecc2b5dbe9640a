//go:build linux

package capture

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Flags are the capture settings as command-line flags. `agent init`
// installs the Config they give, `agent validate` checks it from inside the
// pod, and the CNI plugin reads it back from the tandem-validate
// container's arguments: the injector writes the values it resolved from
// the pod's and its namespace's annotations there, so all three parse the
// same text the same way.
type Flags struct {
	proxyPort, proxyUID, proxyGID            *string
	excludePorts, excludeCIDRs, includeCIDRs *string
}

// AddFlags defines the capture flags on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	return &Flags{
		proxyPort:    fs.String("proxy-port", strconv.Itoa(wellknown.ProxyOutboundPort), "`port` of the proxy's capture listener (1-65535)"),
		proxyUID:     fs.String("proxy-uid", strconv.Itoa(wellknown.ProxyUID), "`UID` of the proxy; its connections are never redirected"),
		proxyGID:     fs.String("proxy-gid", strconv.Itoa(wellknown.ProxyGID), "`GID` of the proxy; its connections are never redirected"),
		excludePorts: fs.String("exclude-outbound-ports", "", "destination `ports` left alone, e.g. 8080,9090"),
		excludeCIDRs: fs.String("exclude-outbound-cidrs", "", "destination `CIDRs` left alone, e.g. 10.0.0.0/8,fd00::/8"),
		includeCIDRs: fs.String("include-outbound-cidrs", "", "when set, only these destination `CIDRs` are captured, e.g. 10.96.0.0/12 (\"*\" means all)"),
	}
}

// Config turns the parsed flag values into a Config; each error names the
// flag and its value.
func (f *Flags) Config() (Config, error) {
	var cfg Config
	var err error
	bad := func(name, value string, err error) error {
		return fmt.Errorf("invalid --%s %q: %v", name, value, err)
	}
	if cfg.ProxyPort, err = ParsePort(*f.proxyPort); err != nil {
		return cfg, bad("proxy-port", *f.proxyPort, err)
	}
	if cfg.ProxyUID, err = parseID(*f.proxyUID); err != nil {
		return cfg, bad("proxy-uid", *f.proxyUID, err)
	}
	if cfg.ProxyGID, err = parseID(*f.proxyGID); err != nil {
		return cfg, bad("proxy-gid", *f.proxyGID, err)
	}
	if cfg.ExcludePorts, err = ParsePorts(*f.excludePorts); err != nil {
		return cfg, bad("exclude-outbound-ports", *f.excludePorts, err)
	}
	if cfg.ExcludeCIDRs, err = ParseCIDRs(*f.excludeCIDRs); err != nil {
		return cfg, bad("exclude-outbound-cidrs", *f.excludeCIDRs, err)
	}
	if cfg.IncludeCIDRs, err = ParseCIDRs(*f.includeCIDRs); err != nil {
		return cfg, bad("include-outbound-cidrs", *f.includeCIDRs, err)
	}
	return cfg, nil
}

// ConfigFromArgs parses a command line of capture flags alone, as the
// injector writes it.
func ConfigFromArgs(args []string) (Config, error) {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: only capture flags are accepted", fs.Arg(0))
	}
	return f.Config()
}

// parseID parses a numeric user or group ID.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric ID from 0 to 4294967295", s)
	}
	return uint32(n), nil
}
