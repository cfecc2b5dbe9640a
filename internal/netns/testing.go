package netns

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// RunTest runs the calling test again in a new network namespace. In the
// parent it returns false after the child passed (the test's result and
// output are the child's); in the child it returns true and the test body
// runs. Where namespaces cannot be made, the test is skipped with the reason.
//
//	if !netns.RunTest(t) { return }
//	... body, inside its own network namespace ...
func RunTest(t *testing.T) bool {
	t.Helper()
	if InChild() {
		return true
	}
	if err := Available(); err != nil {
		t.Skipf("skipped: this test needs its own network namespace: %v", err)
	}
	name := "^" + strings.Join(splitQuoted(t.Name()), "$/^") + "$"
	cmd, err := Command("-test.run="+name, "-test.v", "-test.count=1")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	t.Logf("in its own network namespace:\n%s", out.String())
	if runErr != nil {
		t.Fatalf("the test failed in its network namespace: %v", runErr)
	}
	// A child that matched nothing or skipped must not count as a pass.
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not pass in its network namespace (no PASS line for %s)", t.Name())
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
