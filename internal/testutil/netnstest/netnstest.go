// Package netnstest runs a test in a network namespace of its own (package
// netns), so it can give servers real addresses and install nftables rules
// without touching the machine's network.
package netnstest

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tandem-mesh/tandem/internal/netns"
)

// RunTest runs the calling test again in a new network namespace. In the
// parent it returns false once the child has finished (the test passes,
// fails or skips as the child did; the child's output is logged); in the
// child it returns true and the test body runs. env ("NAME=value") is added
// to the child's environment, for settings a library reads at start-up.
// Where namespaces cannot be made, the test is skipped with the reason.
//
//	if !netnstest.RunTest(t) { return }
//	... body, inside its own network namespace ...
func RunTest(t *testing.T, env ...string) bool {
	t.Helper()
	if netns.InChild() {
		return true
	}
	if err := netns.Available(); err != nil {
		t.Skipf("skipped: this test needs its own network namespace: %v", err)
	}
	name := "^" + strings.Join(splitQuoted(t.Name()), "$/^") + "$"
	args := []string{"-test.run=" + name, "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd, err := netns.Command(args...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	t.Logf("in its own network namespace:\n%s", out.String())
	switch {
	case runErr != nil:
		t.Fatalf("the test failed in its network namespace: %v", runErr)
	case strings.Contains(out.String(), "--- SKIP: "+t.Name()+" "):
		t.Skipf("skipped in its network namespace (the reason is in the log above)")
	case !strings.Contains(out.String(), "--- PASS: "+t.Name()+" "):
		// A child that matched no test must not count as a pass.
		t.Fatalf("the test did not run in its network namespace (no PASS line for %s)", t.Name())
	}
	return false
}

func splitQuoted(name string) []string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return parts
}
