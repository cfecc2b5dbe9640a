//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

// goldenDir holds the dry-run texts pinned by internal/capture's golden test.
var goldenDir = filepath.Join("..", "..", "internal", "capture", "testdata", "dryrun")

func runAgentCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInitDryRunPrintsTheGoldenRuleset(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"exclude-ports", []string{"--exclude-outbound-ports", "8080,9090"}},
		{"default", nil},
		{"include-star", []string{"--include-outbound-cidrs=*"}},
		{"custom-proxy", []string{"-proxy-port", "15006", "--proxy-uid", "1000", "--proxy-gid=1001"}},
		{"include", []string{"--include-outbound-cidrs", "10.96.0.0/12,fd00:10:96::/112", "--exclude-outbound-ports", "15020"}},
	} {
		want, err := os.ReadFile(filepath.Join(goldenDir, tc.golden+".nft"))
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runAgentCLI(append([]string{"init", "--dry-run"}, tc.args...)...)
		if code != 0 || stderr != "" {
			t.Errorf("agent init --dry-run %v: exit %d, stderr %q; want 0 and nothing", tc.args, code, stderr)
		}
		if stdout != string(want) {
			t.Errorf("agent init --dry-run %v printed\n%s\nwant %s.nft:\n%s", tc.args, stdout, tc.golden, want)
		}
	}
}

// badInput are refused with exit 2 and a message naming flag and value.
var badInput = []struct {
	args      []string
	wantInErr []string
}{
	{[]string{"--exclude-outbound-ports", "8080,70000"}, []string{`--exclude-outbound-ports "8080,70000"`, `"70000"`, "1 to 65535"}},
	{[]string{"--exclude-outbound-ports", "8080,,9090"}, []string{`--exclude-outbound-ports "8080,,9090"`, "item 2 of the list is empty"}},
	{[]string{"--exclude-outbound-ports", "0"}, []string{`--exclude-outbound-ports "0"`}},
	{[]string{"--exclude-outbound-cidrs", "10.0.0.0/33"}, []string{`--exclude-outbound-cidrs "10.0.0.0/33"`, "CIDR"}},
	{[]string{"--exclude-outbound-cidrs", "10.0.0.0/8,"}, []string{`--exclude-outbound-cidrs "10.0.0.0/8,"`, "item 2 of the list is empty"}},
	{[]string{"--include-outbound-cidrs", "10.96.0.1/12"}, []string{`--include-outbound-cidrs "10.96.0.1/12"`, "10.96.0.0/12"}},
	{[]string{"--include-outbound-cidrs", "cluster"}, []string{`--include-outbound-cidrs "cluster"`}},
	{[]string{"--proxy-port", "65536"}, []string{`--proxy-port "65536"`, "1 to 65535"}},
	{[]string{"--proxy-port", "http"}, []string{`--proxy-port "http"`}},
	{[]string{"--proxy-uid", "-1"}, []string{`--proxy-uid "-1"`, "numeric ID"}},
	{[]string{"--proxy-gid", "4294967296"}, []string{`--proxy-gid "4294967296"`, "numeric ID"}},
	{[]string{"--exclude-inbound-ports", "80"}, []string{"exclude-inbound-ports"}},
	{[]string{"extra"}, []string{`unexpected argument "extra"`}},
}

func TestInitRefusesBadInput(t *testing.T) {
	for _, tc := range badInput {
		// --dry-run keeps this test away from the machine's own rules even
		// if validation were broken; TestInitInNamespace runs without it.
		code, stdout, stderr := runAgentCLI(append([]string{"init", "--dry-run"}, tc.args...)...)
		if code != 2 {
			t.Errorf("agent init %v: exit %d, want 2", tc.args, code)
		}
		if stdout != "" {
			t.Errorf("agent init %v printed a ruleset for bad input:\n%s", tc.args, stdout)
		}
		for _, want := range tc.wantInErr {
			if !strings.Contains(stderr, want) {
				t.Errorf("agent init %v: stderr %q does not contain %q", tc.args, stderr, want)
			}
		}
	}
}

func TestInitHelp(t *testing.T) {
	code, _, stderr := runAgentCLI("init", "-h")
	if code != 0 || !strings.Contains(stderr, "--exclude-outbound-ports") && !strings.Contains(stderr, "-exclude-outbound-ports") {
		t.Errorf("agent init -h: exit %d, usage %q", code, stderr)
	}
}

// TestInitInNamespace runs the real command in a fresh namespace: bad
// input applies nothing, a good run installs the rules, running again or
// with other flags replaces them.
func TestInitInNamespace(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	// 7 rules by default: TCP only, proxy UID, proxy GID, two loopback,
	// DNS, redirect; a port list adds one, each CIDR one.
	for _, s := range []struct {
		args                []string
		wantCode, wantRules int
		wantStdout, wantErr string
	}{
		{[]string{"--exclude-outbound-ports", "8080,70000"}, 2, 0, "", `"70000"`},
		{[]string{"--include-outbound-cidrs", "10.96.0.1/12"}, 2, 0, "", "10.96.0.1/12"},
		{[]string{"--dry-run", "--exclude-outbound-ports", "8080,9090"}, 0, 0, "tcp dport { 8080, 9090 } return", ""},
		{nil, 0, 7, "installed: table inet tandem, 7 rules read back from the kernel", ""},
		{nil, 0, 7, "", ""},
		{[]string{"--exclude-outbound-ports", "8080,9090"}, 0, 8, "", ""},
		{[]string{"--exclude-outbound-ports", "8080,9090"}, 0, 8, "", ""},
		{[]string{"--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8"}, 0, 9, "", ""},
		// Bad input after a good run leaves the good rules in place.
		{[]string{"--exclude-outbound-cidrs", "10.0.0.0/8,,fd00::/8"}, 2, 9, "", "item 2"},
	} {
		code, stdout, stderr := runAgentCLI(append([]string{"init"}, s.args...)...)
		rules, _, err := capture.Installed()
		if err != nil {
			t.Fatal(err)
		}
		if code != s.wantCode || rules != s.wantRules {
			t.Errorf("agent init %v: exit %d leaving %d rules; want exit %d and %d rules (stderr %q)",
				s.args, code, rules, s.wantCode, s.wantRules, stderr)
		}
		if !strings.Contains(stdout, s.wantStdout) || !strings.Contains(stderr, s.wantErr) {
			t.Errorf("agent init %v: stdout %q, stderr %q; want them to contain %q and %q", s.args, stdout, stderr, s.wantStdout, s.wantErr)
		}
	}
}

// TestInitWithoutCapNetAdmin runs init as an unprivileged user: exit 1 and
// the hint that names the missing capability.
func TestInitWithoutCapNetAdmin(t *testing.T) {
	if !netns.CanSwitchUser() {
		t.Skip("skipped: dropping to an unprivileged user needs root (a user namespace made without root maps only the caller)")
	}
	if !netnstest.RunTest(t) {
		return
	}
	var code int
	var stderr string
	if err := netns.AsUser(1337, 1337, func() error {
		code, _, stderr = runAgentCLI("init")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(stderr, "CAP_NET_ADMIN") || !strings.Contains(stderr, "NET_ADMIN capability") {
		t.Errorf("unprivileged agent init: exit %d, stderr %q; want exit 1 with the CAP_NET_ADMIN hint", code, stderr)
	}
	if _, found, _ := capture.Installed(); found {
		t.Error("unprivileged agent init left a table behind")
	}
}
