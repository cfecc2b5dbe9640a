//go:build linux

package capture

import (
	"testing"

	"github.com/google/nftables"
)

func benchConfig(b *testing.B) Config {
	cfg := DefaultConfig()
	var err error
	if cfg.ExcludePorts, err = ParsePorts("3306,8080,9090,15020,15021"); err != nil {
		b.Fatal(err)
	}
	if cfg.ExcludeCIDRs, err = ParseCIDRs("169.254.169.254,10.0.0.0/8,fc00::/7"); err != nil {
		b.Fatal(err)
	}
	if cfg.IncludeCIDRs, err = ParseCIDRs("10.96.0.0/12,fd00:10:96::/112"); err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkDryRun is `agent init --dry-run` without flag parsing.
func BenchmarkDryRun(b *testing.B) {
	cfg := benchConfig(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = mustBuild(b, cfg).String()
	}
}

// BenchmarkEncode builds the ruleset and encodes the netlink transaction
// Apply sends, without sending it.
func BenchmarkEncode(b *testing.B) {
	cfg := benchConfig(b)
	b.ReportAllocs()
	for b.Loop() {
		conn, err := nftables.New()
		if err != nil {
			b.Fatal(err)
		}
		if err := mustBuild(b, cfg).program(conn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePorts("3306,8080,9090,15020,15021"); err != nil {
			b.Fatal(err)
		}
		if _, err := ParseCIDRs("169.254.169.254,10.0.0.0/8,fc00::/7,10.96.0.0/12,fd00:10:96::/112"); err != nil {
			b.Fatal(err)
		}
	}
}

func mustBuild(b *testing.B, cfg Config) *Ruleset {
	rs, err := Build(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}
