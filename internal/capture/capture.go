//go:build linux

package capture

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// TableName and ChainName name the inet table and its chain. Applying a
// Ruleset replaces this table as a whole.
const (
	TableName = "tandem"
	ChainName = "output"
)

// chainPriority is just ahead of dstnat (-100), where destination NAT of
// locally generated packets belongs. A connection gets its NAT from the
// first chain that sets one, so capture must see it before any other DNAT
// in the namespace (a kube-proxy-like rule would otherwise send it to a
// backend directly); connections capture leaves alone still reach those.
const chainPriority = -110

// Config says which outbound connections go to the proxy.
type Config struct {
	// ProxyPort is where redirected connections arrive (Envoy's listener).
	ProxyPort uint16
	// ProxyUID and ProxyGID own the proxy's sockets; their connections are
	// never redirected, or the proxy would loop back into itself.
	ProxyUID uint32
	ProxyGID uint32
	// ExcludePorts are destination ports left alone.
	ExcludePorts []uint16
	// ExcludeCIDRs are destinations left alone.
	ExcludeCIDRs []netip.Prefix
	// IncludeCIDRs, when not empty, limit capture to these destinations.
	// A list holding both 0.0.0.0/0 and ::/0 means every destination.
	IncludeCIDRs []netip.Prefix
}

// DefaultConfig is the capture of an injected pod without annotations.
func DefaultConfig() Config {
	return Config{
		ProxyPort: wellknown.ProxyOutboundPort,
		ProxyUID:  wellknown.ProxyUID,
		ProxyGID:  wellknown.ProxyGID,
	}
}

// Loopback destinations are never redirected: they are the pod talking to
// itself (the agent, Envoy's admin, the app's own sidecars).
var loopback = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

// dnsPort is exempt so TCP DNS (large answers, zone transfers) reaches the
// resolver directly; UDP is never captured.
const dnsPort = 53

// Rule comments are stored in the kernel with the rule, so `nft list
// ruleset` inside a pod explains itself.
const (
	commentTCPOnly     = "only TCP is captured"
	commentProxyUID    = "the proxy's own traffic"
	commentLoopback    = "loopback"
	commentDNS         = "DNS"
	commentExcludePort = "excluded port"
	commentExcludeCIDR = "excluded destination"
	commentInclude     = "included destination: to the proxy"
	commentCapture     = "to the proxy"
)

// Build turns a Config into the Ruleset that implements it.
func Build(c Config) (*Ruleset, error) {
	if c.ProxyPort == 0 {
		return nil, fmt.Errorf("proxy port 0 is not %s", portForm)
	}
	for _, p := range append(slices.Clip(c.ExcludeCIDRs), c.IncludeCIDRs...) {
		if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("destination %s is not a canonical CIDR", p)
		}
	}
	ret, redirect := verdict{}, verdict{redirectPort: c.ProxyPort}
	rs := &Ruleset{Table: TableName, Chain: ChainName, Priority: chainPriority}
	add := func(comment string, v verdict, m ...match) {
		rs.Rules = append(rs.Rules, Rule{Matches: m, Verdict: v, Comment: comment})
	}

	add(commentTCPOnly, ret, l4protoMatch{not: true})
	add(commentProxyUID, ret, ownerMatch{gid: false, id: c.ProxyUID})
	add(commentProxyUID, ret, ownerMatch{gid: true, id: c.ProxyGID})
	for _, p := range loopback {
		add(commentLoopback, ret, daddrMatch{p})
	}
	add(commentDNS, ret, dportMatch{[]uint16{dnsPort}})
	if ports := uniquePorts(c.ExcludePorts); len(ports) > 0 {
		add(commentExcludePort, ret, dportMatch{ports})
	}
	for _, p := range uniquePrefixes(c.ExcludeCIDRs) {
		add(commentExcludeCIDR, ret, daddrMatch{p})
	}
	include := uniquePrefixes(c.IncludeCIDRs)
	if coversAll(include) {
		include = nil
	}
	if len(include) == 0 {
		add(commentCapture, redirect, l4protoMatch{})
		return rs, nil
	}
	// Each included range redirects; whatever matches none falls off the
	// end of the chain (policy accept) and leaves untouched.
	for _, p := range include {
		add(commentInclude, redirect, daddrMatch{p}, l4protoMatch{})
	}
	return rs, nil
}

// uniquePorts sorts and de-duplicates, as nft lists set elements: the dry
// run then reads exactly like `nft list ruleset` in the pod.
func uniquePorts(ports []uint16) []uint16 {
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out)
}

// uniquePrefixes drops repeats but keeps the user's order.
func uniquePrefixes(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// coversAll reports whether ps holds both 0.0.0.0/0 and ::/0.
func coversAll(ps []netip.Prefix) bool {
	var v4, v6 bool
	for _, p := range ps {
		if p.Bits() == 0 {
			v4 = v4 || p.Addr().Is4()
			v6 = v6 || p.Addr().Is6()
		}
	}
	return v4 && v6
}
