//go:build linux

package capture

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// The seed corpus lives in testdata/fuzz/<FuzzName>/.

func FuzzParsePorts(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if !strings.Contains(err.Error(), "1 to 65535") {
				t.Fatalf("ParsePorts(%q) error %q does not state the accepted form", s, err)
			}
			return
		}
		wantLen := 0
		if s != "" {
			wantLen = strings.Count(s, ",") + 1
		}
		if len(ports) != wantLen {
			t.Fatalf("ParsePorts(%q) = %v: %d ports for %d items", s, ports, len(ports), wantLen)
		}
		items := make([]string, len(ports))
		for i, p := range ports {
			if p == 0 {
				t.Fatalf("ParsePorts(%q) returned port 0", s)
			}
			items[i] = strconv.Itoa(int(p))
		}
		again, err := ParsePorts(strings.Join(items, ","))
		if err != nil || !slices.Equal(again, ports) {
			t.Fatalf("ParsePorts(%q) = %v, but its canonical form reparses to %v, %v", s, ports, again, err)
		}
		cfg := DefaultConfig()
		cfg.ExcludePorts = ports
		buildAndProgram(t, cfg)
	})
}

func FuzzParseCIDRs(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		prefixes, err := ParseCIDRs(s)
		if err != nil {
			// Every error quotes the item it refuses, or says which item is empty.
			msg := err.Error()
			if !strings.Contains(msg, "item ") && !quotesAnItemOf(msg, s) {
				t.Fatalf("ParseCIDRs(%q) error %q names no item of the input", s, msg)
			}
			return
		}
		items := make([]string, len(prefixes))
		for i, p := range prefixes {
			if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseCIDRs(%q) returned %v, which is not a canonical CIDR", s, p)
			}
			items[i] = p.String()
		}
		again, err := ParseCIDRs(strings.Join(items, ","))
		if err != nil || !slices.Equal(again, prefixes) {
			t.Fatalf("ParseCIDRs(%q) = %v, but its canonical form reparses to %v, %v", s, prefixes, again, err)
		}
		cfg := DefaultConfig()
		cfg.ExcludeCIDRs = prefixes
		cfg.IncludeCIDRs = prefixes
		rs := buildAndProgram(t, cfg)
		text := rs.String()
		for _, p := range prefixes {
			if p.Bits() != 0 && !strings.Contains(text, p.Addr().String()) {
				t.Fatalf("the ruleset for %q does not mention %v:\n%s", s, p, text)
			}
		}
	})
}

// buildAndProgram checks that a parsed value always yields a ruleset the
// netlink encoder accepts (nothing is sent: the batch is never flushed).
func buildAndProgram(t *testing.T, cfg Config) *Ruleset {
	t.Helper()
	rs, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build(%+v) refused parsed input: %v", cfg, err)
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.program(conn); err != nil {
		t.Fatalf("encoding the ruleset of %+v: %v", cfg, err)
	}
	return rs
}

func quotesAnItemOf(msg, s string) bool {
	for _, item := range strings.Split(s, ",") {
		if strings.Contains(msg, strconv.Quote(strings.TrimSpace(item))) {
			return true
		}
	}
	return false
}
