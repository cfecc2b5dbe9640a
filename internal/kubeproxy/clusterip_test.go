package kubeproxy

import (
	"bufio"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

// Each new connection to the cluster IP lands on a backend picked at random,
// so many connections reach all backends.
func TestClusterIPBalancesConnections(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	backends := []netip.Addr{
		netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12"), netip.MustParseAddr("203.0.113.13"),
	}
	vip := netip.MustParseAddr("198.51.100.10")
	if err := netns.Setup(backends, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(b, 5000).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func(name string) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name + "\n"))
				c.Close()
			}
		}(b.String())
	}
	remove, err := InstallClusterIP(vip, 80, backends, 5000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 60 {
		c, err := net.DialTimeout("tcp", "198.51.100.10:80", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[line[:len(line)-1]]++
	}
	if len(seen) != 3 {
		t.Fatalf("60 connections reached %v, want all 3 backends", seen)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", "198.51.100.10:80", 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the cluster IP still answers after its rules were removed")
	}
}
