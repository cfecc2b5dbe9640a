//go:build linux

package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

// TestValidateInNamespace: without capture rules validate fails and says
// the CNI plugin is missing; after `agent init` with the same flags it
// passes, as an unprivileged user where the test can switch users.
func TestValidateInNamespace(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	if err := netns.Setup([]netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8::10")}, nil); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--exclude-outbound-ports=8080"}
	asApp := func(fn func()) {
		if !netns.CanSwitchUser() {
			fn()
			return
		}
		if err := netns.AsUser(2000, 2000, func() error { fn(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var code int
	var stdout, stderr string
	asApp(func() { code, stdout, stderr = runAgentCLI(append([]string{"validate"}, flags...)...) })
	if code != 1 || !strings.Contains(stderr, "Tandem CNI plugin (tandem-cni) did not install the capture rules") ||
		!strings.Contains(stderr, "reached that address directly") {
		t.Errorf("validate without rules: exit %d, stderr %q; want exit 1 naming the missing CNI plugin", code, stderr)
	}
	if code, _, stderr = runAgentCLI(append([]string{"init"}, flags...)...); code != 0 {
		t.Fatalf("agent init: exit %d: %s", code, stderr)
	}
	asApp(func() { code, stdout, stderr = runAgentCLI(append([]string{"validate"}, flags...)...) })
	if code != 0 || !strings.Contains(stdout, "outbound traffic is redirected") || !strings.Contains(stdout, "arrived on port 15001") {
		t.Errorf("validate with rules: exit %d, stdout %q, stderr %q; want exit 0", code, stdout, stderr)
	}
	if code, _, stderr = runAgentCLI("validate", "--exclude-outbound-ports=0"); code != 2 || !strings.Contains(stderr, `invalid --exclude-outbound-ports "0"`) {
		t.Errorf("validate with a bad flag: exit %d, stderr %q; want exit 2 naming the flag", code, stderr)
	}
}
