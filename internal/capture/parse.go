package capture

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The accepted forms, quoted in every parse error so a user can fix the
// value without reading the source.
const (
	portForm = "a TCP port number from 1 to 65535"
	cidrForm = `an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8, a single address, or "*" for every address`
)

// ParsePorts parses a comma-separated list of TCP ports such as "8080,9090".
// Spaces around items are ignored; an empty string is an empty list. The
// ports are returned in the order given, duplicates included.
func ParsePorts(s string) ([]uint16, error) {
	items, err := splitList(s, portForm)
	if err != nil {
		return nil, err
	}
	ports := make([]uint16, 0, len(items))
	for _, item := range items {
		p, err := ParsePort(item)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// ParsePort parses one TCP port number (1-65535) written in decimal.
func ParsePort(s string) (uint16, error) {
	// Base 10 rejects signs, "0x" prefixes and underscores: plain digits only.
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not %s", s, portForm)
	}
	return uint16(n), nil
}

// ParseCIDRs parses a comma-separated list of destinations such as
// "10.0.0.0/8,fd00::/8". An item may be a CIDR in canonical form (no bits
// set past the prefix length), a single address (a /32 or /128), or "*",
// which stands for every IPv4 and every IPv6 address (0.0.0.0/0 and ::/0).
// Spaces around items are ignored; an empty string is an empty list.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	items, err := splitList(s, cidrForm)
	if err != nil {
		return nil, err
	}
	prefixes := make([]netip.Prefix, 0, len(items))
	for _, item := range items {
		if item == "*" {
			prefixes = append(prefixes, netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0))
			continue
		}
		p, err := parseCIDR(item)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

func parseCIDR(item string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(item, "/") {
		var err error
		if p, err = netip.ParsePrefix(item); err != nil {
			return p, fmt.Errorf("%q is not %s", item, cidrForm)
		}
	} else {
		a, err := netip.ParseAddr(item)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("%q is not %s", item, cidrForm)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		// The kernel sends these as IPv4 packets: an ip6 match never sees them.
		return p, fmt.Errorf("%q is an IPv4-mapped IPv6 range, which never matches; write the IPv4 form", item)
	}
	if m := p.Masked(); m != p {
		// 10.96.0.1/12 is more likely a typo than a wish for 10.96.0.0/12.
		return p, fmt.Errorf("%q has bits set past the /%d prefix; the range it names is %s, or did you mean %s/%d?",
			item, p.Bits(), m, p.Addr(), p.Addr().BitLen())
	}
	return p, nil
}

// JoinPorts writes ports as ParsePorts reads them: "8080,9090". It takes
// Service ports (int32) as well as capture ports (uint16).
func JoinPorts[P ~uint16 | ~int32](ports []P) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(p), 10))
	}
	return b.String()
}

// JoinCIDRs writes prefixes as ParseCIDRs reads them: "10.0.0.0/8,fd00::/8".
func JoinCIDRs(prefixes []netip.Prefix) string {
	var b strings.Builder
	for i, p := range prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// splitList splits a comma-separated list and rejects empty items, which
// are almost always a stray comma that hides a missing value.
func splitList(s, form string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	items := strings.Split(s, ",")
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("item %d of the list is empty; want a comma-separated list where each item is %s", i+1, form)
		}
		items[i] = item
	}
	return items, nil
}
