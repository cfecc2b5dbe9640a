package webhook

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The traffic.tandem.dev/* annotations become flags of `agent init`, whose
// capture package owns the canonical parsers. These private copies accept the
// same forms and stay here only until that package is part of the build; the
// injector checks values up front so a bad one denies the pod instead of
// crash-looping its init container.

// parsePorts reads "8080,9090": ports 1..65535, comma-separated.
func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, item := range splitList(s) {
		n, err := strconv.ParseUint(item, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port number from 1 to 65535", item)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// parseCIDRs reads "10.0.0.0/8,fd00::/8": IPv4 or IPv6 prefixes without host bits.
func parseCIDRs(s string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, item := range splitList(s) {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", item)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%q has bits set after the prefix length (did you mean %s?)", item, p.Masked())
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

// splitList splits a comma-separated list, trimming spaces; an empty string
// is an empty list, an empty item is kept so the parsers reject it.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

func joinPorts(ports []uint16) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}

func joinPrefixes(prefixes []netip.Prefix) string {
	var b strings.Builder
	for i, p := range prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}
