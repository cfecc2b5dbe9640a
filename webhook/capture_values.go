package webhook

import (
	"net/netip"
	"strconv"
	"strings"
)

// The traffic.tandem.dev/* annotations become flags of `agent init`; the
// injector parses them with the same parsers (package capture) so a bad
// value denies the pod instead of crash-looping its init container. These
// write the parsed values back in the flags' canonical form.

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

// splitList splits a comma-separated list, trimming spaces; an empty string
// is an empty list, an empty item is kept so the callers reject it.
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
