// Package netnstest runs a test inside a network namespace of its own, so
// it can give loopback addresses outside 127.0.0.0/8 (which the API server
// refuses in EndpointSlices) to local servers without touching the host.
package netnstest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// envInside marks the re-executed test binary running in the namespace.
const envInside = "TANDEM_TEST_NETNS"

// Inside reports whether the process runs in the namespace Run created.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Run makes the calling top-level test run in a fresh network namespace.
// Outside one, it re-executes the test binary for this test only, with env
// ("NAME=value") added to its environment, inside a new namespace (`unshare --net` as root, `unshare --user --map-root-user
// --net` otherwise), relays its output, fails or skips as the inner run
// did, and returns false: the caller returns at once. Inside, it brings
// the loopback interface up and returns true. Without root and without
// user namespaces the test is skipped, saying why.
func Run(t *testing.T, env ...string) bool {
	t.Helper()
	if Inside() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v: %s", err, out)
		}
		return true
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatal("netnstest.Run must be called from a top-level test")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is needed to set addresses in the network namespace")
	}
	unshare := []string{"unshare", "--net"}
	if os.Geteuid() != 0 {
		unshare = []string{"unshare", "--user", "--map-root-user", "--net"}
	}
	if out, err := exec.Command(unshare[0], append(unshare[1:], "true")...).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace (needs root, or unprivileged user namespaces for %q): %v: %s",
			strings.Join(unshare, " "), err, bytes.TrimSpace(out))
	}
	args := append(unshare, "--", os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1")
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), env...), envInside+"=1")
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = io.MultiWriter(os.Stderr, &out)
	err := cmd.Run()
	switch {
	case err != nil:
		t.Fatalf("%s in a network namespace failed: %v (its output is above)", t.Name(), err)
	case strings.Contains(out.String(), "--- SKIP: "+t.Name()+" "):
		t.Skipf("%s skipped inside the network namespace (the reason is above)", t.Name())
	}
	return false
}

// AddLoopbackAddrs assigns each address (IPv4 or IPv6, no prefix) to the
// loopback interface of the namespace; only valid inside it.
func AddLoopbackAddrs(addrs ...string) error {
	if !Inside() {
		return fmt.Errorf("AddLoopbackAddrs outside the test's network namespace would change the host")
	}
	for _, a := range addrs {
		prefix, family := a+"/32", "-4"
		if strings.Contains(a, ":") {
			prefix, family = a+"/128", "-6"
		}
		// nodad: the address is usable at once, without duplicate detection.
		cmd := []string{family, "addr", "add", prefix, "dev", "lo"}
		if family == "-6" {
			cmd = append(cmd, "nodad")
		}
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(cmd, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
