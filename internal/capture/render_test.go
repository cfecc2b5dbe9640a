//go:build linux

package capture

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/testutil/golden"
)

// dryRunCases are flag values as `agent init` receives them.
var dryRunCases = []struct {
	name                                     string
	port                                     uint16
	uid, gid                                 uint32
	excludePorts, excludeCIDRs, includeCIDRs string
}{
	{name: "default"},
	{name: "exclude-ports", excludePorts: "8080,9090"},
	{name: "exclude-cidrs", excludeCIDRs: "10.0.0.0/8,fd00::/8,192.0.2.1"},
	{name: "include", includeCIDRs: "10.96.0.0/12,fd00:10:96::/112", excludePorts: "15020"},
	{name: "include-ipv4-only", includeCIDRs: "0.0.0.0/0"},
	{name: "include-star", includeCIDRs: "*"},
	{name: "custom-proxy", port: 15006, uid: 1000, gid: 1001},
	{
		name:         "everything",
		excludePorts: "9090,8080,9090,3306",
		excludeCIDRs: "169.254.169.254,10.0.0.0/8,10.0.0.0/8,fc00::/7",
		includeCIDRs: "10.96.0.0/12,2001:db8::/32,10.244.0.0/14",
	},
}

// TestDryRunGolden pins the text of --dry-run; `go test -update` rewrites
// the files after a deliberate change, for review in the diff.
func TestDryRunGolden(t *testing.T) {
	d := golden.New(t, filepath.Join("testdata", "dryrun"))
	for _, tc := range dryRunCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.port != 0 {
				cfg.ProxyPort, cfg.ProxyUID, cfg.ProxyGID = tc.port, tc.uid, tc.gid
			}
			cfg.ExcludePorts = mustPorts(t, tc.excludePorts)
			cfg.ExcludeCIDRs = mustCIDRs(t, tc.excludeCIDRs)
			cfg.IncludeCIDRs = mustCIDRs(t, tc.includeCIDRs)
			rs, err := Build(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d.Check(t, tc.name+".nft", []byte(rs.String()))
		})
	}
}

func TestIncludeEverythingIsNoInclude(t *testing.T) {
	all, err := Build(Config{ProxyPort: 15001, IncludeCIDRs: mustCIDRs(t, "::/0,0.0.0.0/0")})
	if err != nil {
		t.Fatal(err)
	}
	none, err := Build(Config{ProxyPort: 15001})
	if err != nil {
		t.Fatal(err)
	}
	if all.String() != none.String() {
		t.Errorf("including 0.0.0.0/0 and ::/0 differs from including nothing:\n%s\nvs\n%s", all, none)
	}
}

func TestBuildRefusesWhatParsersRefuse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		wantInErr string
	}{
		{"port 0", Config{}, "proxy port 0"},
		{"host bits", Config{ProxyPort: 1, ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")}}, "10.0.0.1/8 is not a canonical CIDR"},
		{"zero prefix", Config{ProxyPort: 1, IncludeCIDRs: []netip.Prefix{{}}}, "is not a canonical CIDR"},
	} {
		_, err := Build(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.wantInErr) {
			t.Errorf("%s: Build error %v, want one containing %q", tc.name, err, tc.wantInErr)
		}
	}
}
