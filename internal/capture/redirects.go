//go:build linux

package capture

import (
	"net/netip"
	"slices"
)

// Redirects reports whether the rules Build makes of c send a TCP
// connection from a socket of uid/gid to dst to the proxy. It reads the
// Config the way the chain does, rule by rule, so a caller can choose a
// destination that capture must redirect (agent validate) without asking
// the kernel.
func (c Config) Redirects(uid, gid uint32, dst netip.AddrPort) bool {
	addr := dst.Addr().Unmap()
	in := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(addr) })
	}
	switch {
	case uid == c.ProxyUID, gid == c.ProxyGID:
		return false
	case in(loopback):
		return false
	case dst.Port() == dnsPort, slices.Contains(c.ExcludePorts, dst.Port()):
		return false
	case in(c.ExcludeCIDRs):
		return false
	}
	include := uniquePrefixes(c.IncludeCIDRs)
	return len(include) == 0 || coversAll(include) || in(include)
}
