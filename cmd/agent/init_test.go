//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/netnstest"
)

// goldenDir holds the dry-run texts pinned by internal/capture's golden test.
var goldenDir = filepath.Join("..", "..", "internal", "capture", "testdata", "dryrun")

func runAgent(args ...string) (code int, stdout, stderr string) {
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
		code, stdout, stderr := runAgent(append([]string{"init", "--dry-run"}, tc.args...)...)
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
		code, stdout, stderr := runAgent(append([]string{"init", "--dry-run"}, tc.args...)...)
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
	code, _, stderr := runAgent("init", "-h")
	if code != 0 || !strings.Contains(stderr, "--exclude-outbound-ports") && !strings.Contains(stderr, "-exclude-outbound-ports") {
		t.Errorf("agent init -h: exit %d, usage %q", code, stderr)
	}
}

// step is one `agent init` run inside the namespace and what it left.
type step struct {
	Args                   []string
	Code                   int
	Stdout, Stderr         string
	Tables, Rules          int
	WantCode, WantRules    int
	WantTables             int
	WantStdout, WantStderr string
}

// TestInitInNamespace runs the real command against a fresh namespace:
// bad input applies nothing, a good run installs one table, running again
// or with other flags replaces it.
func TestInitInNamespace(t *testing.T) {
	// 7 rules by default: TCP only, proxy UID, proxy GID, two loopback,
	// DNS, redirect; a port list adds one, each CIDR one.
	steps := []step{
		{Args: []string{"--exclude-outbound-ports", "8080,70000"}, WantCode: 2, WantStderr: `"70000"`},
		{Args: []string{"--include-outbound-cidrs", "10.96.0.1/12"}, WantCode: 2, WantStderr: "10.96.0.1/12"},
		{Args: []string{"--dry-run", "--exclude-outbound-ports", "8080,9090"}, WantStdout: "tcp dport { 8080, 9090 } return"},
		{Args: nil, WantTables: 1, WantRules: 7, WantStdout: "applied: table inet tandem, 7 rules"},
		{Args: nil, WantTables: 1, WantRules: 7},
		{Args: []string{"--exclude-outbound-ports", "8080,9090"}, WantTables: 1, WantRules: 8},
		{Args: []string{"--exclude-outbound-ports", "8080,9090"}, WantTables: 1, WantRules: 8},
		{Args: []string{"--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8"}, WantTables: 1, WantRules: 9},
		// Bad input after a good run leaves the good rules in place.
		{Args: []string{"--exclude-outbound-cidrs", "10.0.0.0/8,,fd00::/8"}, WantCode: 2, WantTables: 1, WantRules: 9, WantStderr: "item 2"},
	}
	var got []step
	netnstest.Run(t, "TestInitHelper", steps, &got)
	if len(got) != len(steps) {
		t.Fatalf("helper ran %d steps of %d", len(got), len(steps))
	}
	for _, s := range got {
		if s.Code != s.WantCode || s.Tables != s.WantTables || s.Rules != s.WantRules {
			t.Errorf("agent init %v: exit %d leaving %d tables, %d rules; want exit %d, %d tables, %d rules (stderr %q)",
				s.Args, s.Code, s.Tables, s.Rules, s.WantCode, s.WantTables, s.WantRules, s.Stderr)
		}
		if !strings.Contains(s.Stdout, s.WantStdout) || !strings.Contains(s.Stderr, s.WantStderr) {
			t.Errorf("agent init %v: stdout %q, stderr %q; want them to contain %q and %q", s.Args, s.Stdout, s.Stderr, s.WantStdout, s.WantStderr)
		}
	}
}

func TestInitHelper(t *testing.T) {
	netnstest.Child(t, func(t *testing.T, steps []step) any {
		for i := range steps {
			s := &steps[i]
			s.Code, s.Stdout, s.Stderr = runAgent(append([]string{"init"}, s.Args...)...)
			s.Tables, s.Rules = netnstest.InetRules(t, capture.TableName, capture.ChainName)
		}
		return steps
	})
}

// TestInitWithoutCapNetAdmin runs init as an unprivileged user: exit 1 and
// the hint that names the missing capability.
func TestInitWithoutCapNetAdmin(t *testing.T) {
	if !netnstest.CanSwitchUser() {
		t.Skip("skipping: dropping to an unprivileged UID needs root (a user namespace maps only the caller)")
	}
	var got step
	netnstest.Run(t, "TestInitUnprivilegedHelper", step{Args: nil}, &got)
	if got.Code != 1 || !strings.Contains(got.Stderr, "CAP_NET_ADMIN") || !strings.Contains(got.Stderr, "NET_ADMIN capability") {
		t.Errorf("unprivileged agent init: exit %d, stderr %q; want exit 1 with the CAP_NET_ADMIN hint", got.Code, got.Stderr)
	}
	if got.Tables != 0 {
		t.Errorf("unprivileged agent init left %d tables", got.Tables)
	}
}

func TestInitUnprivilegedHelper(t *testing.T) {
	netnstest.Child(t, func(t *testing.T, s step) any {
		err := netnstest.AsUser(1337, 1337, func() error {
			s.Code, s.Stdout, s.Stderr = runAgent(append([]string{"init"}, s.Args...)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Tables, s.Rules = netnstest.InetRules(t, capture.TableName, capture.ChainName)
		return s
	})
}
