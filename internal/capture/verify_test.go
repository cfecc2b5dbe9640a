//go:build linux

package capture

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

// TestVerifyRedirect runs the check of `agent validate` in a namespace
// without the rules, then with them.
func TestVerifyRedirect(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	if err := netns.Setup(podAddrs, podRoutes); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	dst, err := VerifyRedirect(cfg, time.Second)
	if !errors.Is(err, ErrNotRedirected) || !strings.Contains(err.Error(), "reached that address directly") {
		t.Errorf("VerifyRedirect without rules: %v (dialed %s), want ErrNotRedirected because it reached the decoy", err, dst)
	}
	rs, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Apply(); err != nil {
		t.Fatal(err)
	}
	dst, err = VerifyRedirect(cfg, time.Second)
	if err != nil {
		t.Fatalf("VerifyRedirect with the rules: %v", err)
	}
	if !dst.Addr().IsGlobalUnicast() {
		t.Errorf("VerifyRedirect dialed %s, want one of the pod's own addresses", dst)
	}
	// Capture limited to a range holding none of the pod's addresses: the
	// check dials into that range, and without a redirect nothing answers.
	cfg.IncludeCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}
	if rs, err = Build(cfg); err != nil {
		t.Fatal(err)
	}
	if err := rs.Apply(); err != nil {
		t.Fatal(err)
	}
	if dst, err = VerifyRedirect(cfg, time.Second); err != nil || dst.Addr() != netip.MustParseAddr("203.0.113.129") {
		t.Errorf("VerifyRedirect with an included range: dialed %s, %v; want 203.0.113.129 redirected", dst, err)
	}
	if netns.CanSwitchUser() {
		err := netns.AsUser(1337, 1337, func() error { _, err := VerifyRedirect(cfg, time.Second); return err })
		if err == nil || !strings.Contains(err.Error(), "never redirects") {
			t.Errorf("VerifyRedirect as the proxy user: %v, want a refusal", err)
		}
	}
}

func TestRedirectsReadsTheConfigLikeTheChain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExcludePorts = []uint16{8080}
	cfg.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	cfg.IncludeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		uid, gid uint32
		dst      string
		want     bool
	}{
		{0, 0, "10.2.3.4:80", true},
		{0, 0, "[fd00::1]:80", true},
		{1337, 0, "10.2.3.4:80", false},
		{0, 1337, "10.2.3.4:80", false},
		{0, 0, "10.2.3.4:8080", false},
		{0, 0, "10.2.3.4:53", false},
		{0, 0, "10.1.3.4:80", false},
		{0, 0, "192.0.2.1:80", false},
		{0, 0, "127.0.0.1:80", false},
		{0, 0, "[::1]:80", false},
		{0, 0, "[::ffff:10.2.3.4]:80", true},
	} {
		if got := cfg.Redirects(tc.uid, tc.gid, ap(tc.dst)); got != tc.want {
			t.Errorf("Redirects(%d, %d, %s) = %v, want %v", tc.uid, tc.gid, tc.dst, got, tc.want)
		}
	}
	all := DefaultConfig()
	all.IncludeCIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	if !all.Redirects(0, 0, ap("192.0.2.1:80")) || !all.Redirects(0, 0, ap("[2001:db8::1]:80")) {
		t.Error("including everything does not redirect everything")
	}
}
