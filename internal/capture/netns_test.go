//go:build linux

package capture

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-mesh/tandem/internal/netnstest"
)

// The namespace stands in for a pod: these documentation addresses play
// Services and remote hosts. Each is local (a server can listen on it), so
// a connection that is not redirected still arrives somewhere observable.
var (
	localAddrs = []string{"198.51.100.10", "198.51.100.20", "203.0.113.10", "192.0.2.10", "2001:db8::10", "2001:db8:ffff::10"}
	localNets  = []string{"198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "2001:db8::/32"}
)

const proxyPort = 15001

// dial is one connection the helper opens, from a socket owned by Owner
// (root when nil; the rest of the process stays root).
type dial struct {
	Addr  string
	Owner *owner `json:",omitempty"`
}

type owner struct{ UID, GID uint32 }

func (o *owner) String() string {
	if o == nil {
		return "root"
	}
	return fmt.Sprintf("uid %d gid %d", o.UID, o.GID)
}

// arrival is what the accepting side saw.
type arrival struct {
	// Port is the listener that accepted: proxyPort when redirected.
	Port int
	// OrigDst is what OriginalDst read on the accepted connection.
	OrigDst string
	Err     string
}

type scenario struct {
	Config  Config
	Applies int
	Dials   []dial
	// Inbound are dialed from a peer namespace joined by a veth pair,
	// towards addresses of the captured namespace.
	Inbound []string
	// CompareNFT reads the rules back with the nft tool and reloads the
	// dry-run text with it; the dials run on the rules of Apply all the same.
	CompareNFT bool
}

// The veth link to the peer namespace: more specific than the loopback
// routes above, so its addresses are reached over the link.
var (
	linkLocal  = []string{"192.0.2.129/25", "2001:db8:aaaa::1/64"}
	linkRemote = []string{"192.0.2.130/25", "2001:db8:aaaa::2/64"}
)

type outcome struct {
	// RuleCounts holds the rules in the chain after each Apply.
	RuleCounts []int
	// Tables counts the inet tables named TableName at the end.
	Tables   int
	Arrivals []arrival
	// InboundArrivals follow Inbound.
	InboundArrivals []arrival
	// With CompareNFT: NFT is `nft list table` and NFTNetlink its
	// expression dump after Apply, NFTReloaded the dump after loading
	// String() with `nft -f`.
	NFT, NFTNetlink, NFTReloaded string
}

// runScenario applies s.Config in a fresh namespace and reports what each
// dial reached.
func runScenario(t *testing.T, s scenario) outcome {
	t.Helper()
	var out outcome
	netnstest.Run(t, "TestScenarioHelper", s, &out)
	if len(out.Arrivals) != len(s.Dials) {
		t.Fatalf("helper reported %d arrivals for %d dials", len(out.Arrivals), len(s.Dials))
	}
	return out
}

// wantArrivals checks every dial: redirected ones reach the proxy port with
// their original destination intact, the others reach the address dialed.
func wantArrivals(t *testing.T, s scenario, out outcome, redirected []bool) {
	t.Helper()
	for i, d := range s.Dials {
		got := out.Arrivals[i]
		if got.Err != "" {
			t.Errorf("dial %s as %v: %s", d.Addr, d.Owner, got.Err)
			continue
		}
		dialed := netip.MustParseAddrPort(d.Addr)
		wantPort := int(dialed.Port())
		if redirected[i] {
			wantPort = proxyPort
		}
		if got.Port != wantPort || got.OrigDst != dialed.String() {
			t.Errorf("dial %s as %v: arrived at port %d with original destination %s; want port %d with %s",
				d.Addr, d.Owner, got.Port, got.OrigDst, wantPort, dialed)
		}
	}
}

func TestRedirectsOutboundTCPToProxy(t *testing.T) {
	s := scenario{Config: DefaultConfig(), Dials: []dial{
		{Addr: "198.51.100.10:50051"},
		{Addr: "[2001:db8::10]:50051"},
		{Addr: "203.0.113.10:80"},
		{Addr: "127.0.0.1:50051"},     // loopback
		{Addr: "[::1]:50051"},         // loopback
		{Addr: "198.51.100.10:53"},    // DNS over TCP
		{Addr: "[2001:db8::10]:53"},   // DNS over TCP
		{Addr: "198.51.100.10:15001"}, // the proxy port of another host is still captured
	}}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{true, true, true, false, false, false, false, true})
}

// TestInboundIsUntouched connects from another namespace into the
// captured one: the servers there answer on their own ports, replies
// included, while their own outbound dials are still captured.
func TestInboundIsUntouched(t *testing.T) {
	s := scenario{
		Config:  DefaultConfig(),
		Dials:   []dial{{Addr: "198.51.100.10:50051"}},
		Inbound: []string{"192.0.2.129:50051", "[2001:db8:aaaa::1]:50051", "192.0.2.129:15021", "192.0.2.129:15001"},
	}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{true})
	if len(out.InboundArrivals) != len(s.Inbound) {
		t.Fatalf("%d inbound arrivals for %d dials", len(out.InboundArrivals), len(s.Inbound))
	}
	for i, a := range s.Inbound {
		dialed := netip.MustParseAddrPort(a)
		got := out.InboundArrivals[i]
		if got.Err != "" || got.Port != int(dialed.Port()) || got.OrigDst != dialed.String() {
			t.Errorf("inbound dial %s: arrived at port %d with original destination %s (error %q); want port %d with %s",
				a, got.Port, got.OrigDst, got.Err, dialed.Port(), dialed)
		}
	}
}

func TestProxyOwnTrafficIsNotRedirected(t *testing.T) {
	if !netnstest.CanSwitchUser() {
		t.Skip("skipping: sockets owned by UID/GID 1337 need root (a user namespace maps only the caller)")
	}
	s := scenario{Config: DefaultConfig(), Dials: []dial{
		{Addr: "198.51.100.10:50051", Owner: &owner{1337, 1337}},
		{Addr: "[2001:db8::10]:50051", Owner: &owner{1337, 1337}},
		{Addr: "198.51.100.10:50051", Owner: &owner{1337, 2000}},
		{Addr: "198.51.100.10:50051", Owner: &owner{2000, 1337}},
		{Addr: "198.51.100.10:50051", Owner: &owner{2000, 2000}}, // an app user
		{Addr: "198.51.100.10:50051", Owner: &owner{1338, 1338}},
	}}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{false, false, false, false, true, true})
}

func TestCustomProxyIdentityAndPort(t *testing.T) {
	if !netnstest.CanSwitchUser() {
		t.Skip("skipping: sockets owned by other UIDs need root (a user namespace maps only the caller)")
	}
	cfg := Config{ProxyPort: proxyPort, ProxyUID: 4242, ProxyGID: 4343}
	s := scenario{Config: cfg, Dials: []dial{
		{Addr: "198.51.100.10:50051", Owner: &owner{4242, 0}},
		{Addr: "198.51.100.10:50051", Owner: &owner{1000, 4343}},
		{Addr: "198.51.100.10:50051", Owner: &owner{1337, 1337}}, // 1337 is nobody special now
	}}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{false, false, true})
}

func TestExcludedPortsAndCIDRs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "8080,9090")
	cfg.ExcludeCIDRs = mustCIDRs(t, "203.0.113.0/24,2001:db8:ffff::/48")
	s := scenario{Config: cfg, Dials: []dial{
		{Addr: "198.51.100.10:8080"},
		{Addr: "198.51.100.10:9090"},
		{Addr: "[2001:db8::10]:9090"},
		{Addr: "203.0.113.10:50051"},
		{Addr: "[2001:db8:ffff::10]:50051"},
		{Addr: "198.51.100.10:50051"},  // neither excluded
		{Addr: "[2001:db8::10]:50051"}, // outside the excluded /48
		{Addr: "198.51.100.10:8081"},
	}}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{false, false, false, false, false, true, true, true})
}

func TestIncludeCIDRsLimitCapture(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IncludeCIDRs = mustCIDRs(t, "198.51.100.0/24,2001:db8::/64")
	cfg.ExcludeCIDRs = mustCIDRs(t, "198.51.100.10/32") // exclusion wins inside an included range
	cfg.ExcludePorts = mustPorts(t, "8080")
	s := scenario{Config: cfg, Dials: []dial{
		{Addr: "198.51.100.20:50051"},
		{Addr: "[2001:db8::10]:50051"},
		{Addr: "203.0.113.10:50051"},        // outside the included ranges
		{Addr: "192.0.2.10:50051"},          // outside the included ranges
		{Addr: "[2001:db8:ffff::10]:50051"}, // outside the included /64
		{Addr: "198.51.100.10:50051"},       // included but excluded
		{Addr: "198.51.100.20:8080"},        // included but an excluded port
		{Addr: "127.0.0.1:50051"},
	}}
	out := runScenario(t, s)
	wantArrivals(t, s, out, []bool{true, true, false, false, false, false, false, false})
}

// TestIncludeWholeFamilies: 0.0.0.0/0 alone captures IPv4 and leaves IPv6
// alone; "*" captures both.
func TestIncludeWholeFamilies(t *testing.T) {
	for _, tc := range []struct {
		include string
		v4, v6  bool
	}{
		{"0.0.0.0/0", true, false},
		{"::/0", false, true},
		{"*", true, true},
	} {
		cfg := DefaultConfig()
		cfg.IncludeCIDRs = mustCIDRs(t, tc.include)
		s := scenario{Config: cfg, Dials: []dial{{Addr: "203.0.113.10:50051"}, {Addr: "[2001:db8::10]:50051"}}}
		t.Run(tc.include, func(t *testing.T) {
			wantArrivals(t, s, runScenario(t, s), []bool{tc.v4, tc.v6})
		})
	}
}

func TestApplyTwiceReplacesTheTable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "8080,9090")
	cfg.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/8,fd00::/8")
	s := scenario{Config: cfg, Applies: 3, Dials: []dial{{Addr: "198.51.100.10:50051"}, {Addr: "198.51.100.10:8080"}}}
	out := runScenario(t, s)
	// 6 fixed rules (TCP only, UID, GID, two loopback, DNS), one for the
	// port set, two CIDRs, the final redirect.
	const want = 10
	for i, n := range out.RuleCounts {
		if n != want {
			t.Errorf("after apply %d: %d rules in the chain, want %d", i+1, n, want)
		}
	}
	if len(out.RuleCounts) != 3 {
		t.Errorf("rule counts for %d applies, want 3", len(out.RuleCounts))
	}
	if out.Tables != 1 {
		t.Errorf("%d inet tables named %q, want 1", out.Tables, TableName)
	}
	wantArrivals(t, s, out, []bool{true, false})
}

// TestKernelAgreesWithDryRun loads the rules through netlink, lists them
// with the nft tool, and also loads String() with `nft -f`: the listing
// must equal the dry-run text, and both ways must leave the very same
// kernel expressions.
func TestKernelAgreesWithDryRun(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: needs the nft tool (Debian package nftables) to read the rules back")
	}
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "9090,8080,15020")
	cfg.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/8,172.16.0.0/12,fc00::/7,2001:db8::/33,192.0.2.1")
	cfg.IncludeCIDRs = mustCIDRs(t, "10.96.0.0/12,2001:db8::/32,0.0.0.0/0,::1")
	out := runScenario(t, scenario{Config: cfg, CompareNFT: true})
	rs, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if out.NFT != rs.tableText() {
		t.Errorf("nft list table differs from the dry-run text:\n--- nft\n%s\n--- dry run\n%s", out.NFT, rs.tableText())
	}
	if out.NFTNetlink == "" || out.NFTNetlink != out.NFTReloaded {
		t.Errorf("expressions from Apply and from `nft -f` of the dry run differ:\n--- Apply\n%s\n--- nft -f\n%s", out.NFTNetlink, out.NFTReloaded)
	}
}

// TestScenarioHelper runs inside the namespace: it sets up the addresses,
// applies the rules, listens, dials and reports.
func TestScenarioHelper(t *testing.T) {
	netnstest.Child(t, func(t *testing.T, s scenario) any {
		for _, a := range localAddrs {
			netnstest.LoopbackAddress(t, a)
		}
		for _, n := range localNets {
			netnstest.LoopbackRoute(t, n)
		}
		rs, err := Build(s.Config)
		if err != nil {
			t.Fatal(err)
		}
		var out outcome
		for range max(s.Applies, 1) {
			if err := rs.Apply(); err != nil {
				t.Fatal(err)
			}
			tables, n := netnstest.InetRules(t, TableName, ChainName)
			out.RuleCounts = append(out.RuleCounts, n)
			out.Tables = tables
		}
		if s.CompareNFT {
			out.NFT, out.NFTNetlink, out.NFTReloaded = nftViews(t, rs)
			if err := rs.Apply(); err != nil { // back to the rules under test
				t.Fatal(err)
			}
		}

		ports := map[int]bool{proxyPort: true}
		for _, d := range s.Dials {
			ports[int(netip.MustParseAddrPort(d.Addr).Port())] = true
		}
		for _, a := range s.Inbound {
			ports[int(netip.MustParseAddrPort(a).Port())] = true
		}
		for p := range ports {
			serve(t, p)
		}
		for _, d := range s.Dials {
			out.Arrivals = append(out.Arrivals, dialAs(d))
		}
		if len(s.Inbound) > 0 {
			peer := netnstest.NewPeer(t, linkLocal, linkRemote)
			for _, a := range s.Inbound {
				var got arrival
				if err := peer.Do(func() error { got = dialOnce(a); return nil }); err != nil {
					got = arrival{Err: err.Error()}
				}
				out.InboundArrivals = append(out.InboundArrivals, got)
			}
		}
		return out
	})
}

// nftViews lists the applied table with the nft tool, then reloads it from
// the dry-run text and dumps the kernel expressions both times.
func nftViews(t *testing.T, rs *Ruleset) (listing, applied, reloaded string) {
	t.Helper()
	nft := func(stdin string, args ...string) string {
		cmd := exec.Command("nft", args...)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	listing = nft("", "list", "table", "inet", TableName)
	applied = nft("", "--debug=netlink", "list", "table", "inet", TableName)
	nft(rs.String(), "-f", "-")
	reloaded = nft("", "--debug=netlink", "list", "table", "inet", TableName)
	return listing, stripHandles(applied), stripHandles(reloaded)
}

// stripHandles drops the rule handles and positions from the rule headers
// of an `nft --debug=netlink` dump ("inet tandem output 5 4"): the kernel
// assigns them, so they may differ between two loads.
func stripHandles(dump string) string {
	lines := strings.Split(dump, "\n")
	for i, line := range lines {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "inet" && f[1] == TableName {
			lines[i] = strings.Join(f[:3], " ")
		}
	}
	return strings.Join(lines, "\n")
}

// serve answers every connection on port (all addresses, IPv4 and IPv6)
// with the listener's port and the original destination of the connection.
func serve(t *testing.T, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				orig, err := OriginalDst(c.(*net.TCPConn))
				if err != nil {
					fmt.Fprintf(c, "%d error %v\n", port, err)
					return
				}
				fmt.Fprintf(c, "%d %s\n", port, orig)
			}()
		}
	}()
}

// dialAs connects from a socket owned by d.Owner.
func dialAs(d dial) arrival {
	if d.Owner == nil {
		return dialOnce(d.Addr)
	}
	var a arrival
	err := netnstest.AsUser(d.Owner.UID, d.Owner.GID, func() error {
		a = dialOnce(d.Addr)
		return nil
	})
	if err != nil {
		return arrival{Err: err.Error()}
	}
	return a
}

func dialOnce(addr string) arrival {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return arrival{Err: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return arrival{Err: "reading the answer: " + err.Error()}
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return arrival{Err: "bad answer " + strconv.Quote(line)}
	}
	port, _ := strconv.Atoi(f[0])
	if f[1] == "error" {
		return arrival{Port: port, Err: strings.Join(f[2:], " ")}
	}
	return arrival{Port: port, OrigDst: f[1]}
}

// TestApplyWithoutPermission applies from a socket without CAP_NET_ADMIN
// and expects the hint that says what the init container lacks.
func TestApplyWithoutPermission(t *testing.T) {
	if !netnstest.CanSwitchUser() {
		t.Skip("skipping: dropping to an unprivileged UID needs root (a user namespace maps only the caller)")
	}
	var got struct{ Err string }
	netnstest.Run(t, "TestApplyWithoutPermissionHelper", DefaultConfig(), &got)
	if !strings.Contains(got.Err, "operation not permitted") || !strings.Contains(got.Err, "CAP_NET_ADMIN") {
		t.Errorf("Apply as an unprivileged user: error %q, want EPERM with the CAP_NET_ADMIN hint", got.Err)
	}
}

func TestApplyWithoutPermissionHelper(t *testing.T) {
	netnstest.Child(t, func(t *testing.T, cfg Config) any {
		rs, err := Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = netnstest.AsUser(1337, 1337, rs.Apply)
		if err == nil {
			t.Fatal("Apply without CAP_NET_ADMIN succeeded")
		}
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("Apply error %v is not EPERM", err)
		}
		return struct{ Err string }{err.Error()}
	})
}

func mustPorts(t *testing.T, s string) []uint16 {
	t.Helper()
	p, err := ParsePorts(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
