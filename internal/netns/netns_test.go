package netns_test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

func TestSetupGivesLoopbackTheAddresses(t *testing.T) {
	if !netnstest.RunTest(t) {
		// The parent's namespace must not have been touched.
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.(*net.IPNet).IP.Equal(net.ParseIP("198.51.100.7")) {
				t.Fatal("198.51.100.7 leaked into the parent's network namespace")
			}
		}
		return
	}
	if err := netns.Setup([]netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")},
		[]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"198.51.100.7:0", "[2001:db8::7]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		c.Close()
		ln.Close()
	}
	// The routed range goes to loopback, where no address answers: the
	// connection attempt times out instead of failing as unreachable.
	_, err := net.DialTimeout("tcp", "203.0.113.9:80", 200*time.Millisecond)
	if err == nil {
		t.Fatal("a connection to 203.0.113.9:80 succeeded with nothing there")
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("203.0.113.0/24 is not routed through loopback: %v", err)
	}
	// A second Setup with the same values is harmless.
	if err := netns.Setup([]netip.Addr{netip.MustParseAddr("198.51.100.7")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}); err != nil {
		t.Fatalf("repeating Setup: %v", err)
	}
}

// parentNetnsEnv carries the parent's network namespace to the child of
// TestRerunReturnsTheChildsExitCode.
const parentNetnsEnv = "TANDEM_TEST_PARENT_NETNS"

func TestRerunReturnsTheChildsExitCode(t *testing.T) {
	if netns.InChild() {
		// The child: exit 7 in a namespace of its own, 8 in the parent's.
		mine, _ := os.Readlink("/proc/self/ns/net")
		if mine != "" && mine != os.Getenv(parentNetnsEnv) {
			os.Exit(7)
		}
		os.Exit(8)
	}
	if err := netns.Available(); err != nil {
		t.Skipf("skipped: this test needs network namespaces: %v", err)
	}
	parent, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	code, err := netns.Rerun([]string{parentNetnsEnv + "=" + parent}, "-test.run=^TestRerunReturnsTheChildsExitCode$")
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Fatalf("Rerun returned %d, want 7: the child's exit code, from a network namespace of its own (8: the parent's)", code)
	}
}
