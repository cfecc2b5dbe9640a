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

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

// Each test below runs in a network namespace of its own (netns.RunTest),
// standing in for a pod. The documentation addresses play Services and
// remote hosts; each is made local, so a connection that is not redirected
// still arrives somewhere observable, and the ranges around them are
// routed through loopback.
var (
	podAddrs = []netip.Addr{
		netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.21"),
		netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("192.0.2.10"),
		netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8:ffff::10"),
	}
	podRoutes = []netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
)

const proxyPort = 15001

// owner is the user and group of a dialing socket; nil is root.
type owner struct{ uid, gid uint32 }

func (o *owner) String() string {
	if o == nil {
		return "root"
	}
	return fmt.Sprintf("uid %d gid %d", o.uid, o.gid)
}

// conn is one connection a test opens and where it must arrive.
type conn struct {
	addr       string
	as         *owner
	redirected bool
}

// pod prepares the test's namespace and applies cfg with the real code.
type pod struct {
	t       *testing.T
	servers map[uint16]bool
}

func newPod(t *testing.T, cfg Config) *pod {
	t.Helper()
	if err := netns.Setup(podAddrs, podRoutes); err != nil {
		t.Fatal(err)
	}
	p := &pod{t: t, servers: map[uint16]bool{}}
	p.apply(cfg)
	p.serve(proxyPort)
	return p
}

func (p *pod) apply(cfg Config) *Ruleset {
	p.t.Helper()
	rs, err := Build(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := rs.Apply(); err != nil {
		p.t.Fatal(err)
	}
	return rs
}

// serve answers every connection on port (every address, IPv4 and IPv6)
// with the port it accepted on and the connection's original destination.
func (p *pod) serve(port uint16) {
	p.t.Helper()
	if p.servers[port] {
		return
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(port)))
	if err != nil {
		p.t.Fatal(err)
	}
	p.servers[port] = true
	p.t.Cleanup(func() { ln.Close() })
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

// expect dials every conn: redirected ones must reach the proxy port with
// their original destination intact, the others the address dialed.
func (p *pod) expect(conns ...conn) {
	p.t.Helper()
	for _, c := range conns {
		dst := netip.MustParseAddrPort(c.addr)
		p.serve(dst.Port())
		var port int
		var orig string
		dial := func() (err error) { port, orig, err = dialAndRead(podSource(c.addr), c.addr); return err }
		var err error
		if c.as == nil {
			err = dial()
		} else {
			err = netns.AsUser(c.as.uid, c.as.gid, dial)
		}
		if err != nil {
			p.t.Errorf("connection to %s as %v: %v", c.addr, c.as, err)
			continue
		}
		want := int(dst.Port())
		if c.redirected {
			want = proxyPort
		}
		if port != want || orig != dst.String() {
			p.t.Errorf("connection to %s as %v arrived at port %d with original destination %s; want port %d with %s",
				c.addr, c.as, port, orig, want, dst)
		}
	}
}

// podSource is the source address of the pod's connections to addr, as
// its pod IP would be (loopback for loopback). It differs from most
// destinations, so a rule matching the wrong address field shows.
func podSource(addr string) netip.Addr {
	switch dst := netip.MustParseAddrPort(addr).Addr(); {
	case dst.IsLoopback():
		return netip.Addr{}
	case dst.Is4():
		return netip.MustParseAddr("192.0.2.10")
	default:
		return netip.MustParseAddr("2001:db8::10")
	}
}

// dialAndRead connects from (any source when unset) to addr and reads what
// the accepting server saw.
func dialAndRead(from netip.Addr, addr string) (port int, orig string, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("reading the answer: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, "", fmt.Errorf("bad answer %q", line)
	}
	if port, err = strconv.Atoi(f[0]); err != nil {
		return 0, "", fmt.Errorf("bad answer %q", line)
	}
	if f[1] == "error" {
		return port, "", errors.New(strings.Join(f[2:], " "))
	}
	return port, f[1], nil
}

func needOtherUsers(t *testing.T) {
	t.Helper()
	if !netns.CanSwitchUser() {
		t.Skip("skipped: sockets owned by other users need root (a user namespace made without root maps only the caller)")
	}
}

func TestRedirectsOutboundTCPToProxy(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	newPod(t, DefaultConfig()).expect(
		conn{addr: "198.51.100.10:50051", redirected: true},
		conn{addr: "[2001:db8::10]:50051", redirected: true},
		conn{addr: "203.0.113.10:80", redirected: true},
		conn{addr: "198.51.100.10:15001", redirected: true}, // another host's 15001 is just a port
		conn{addr: "127.0.0.1:50051"},                       // loopback
		conn{addr: "127.0.0.53:50051"},                      // loopback
		conn{addr: "[::1]:50051"},                           // loopback
		conn{addr: "198.51.100.10:53"},                      // DNS over TCP
		conn{addr: "[2001:db8::10]:53"},                     // DNS over TCP
	)
}

func TestProxyOwnTrafficIsNotRedirected(t *testing.T) {
	needOtherUsers(t)
	if !netnstest.RunTest(t) {
		return
	}
	newPod(t, DefaultConfig()).expect(
		conn{addr: "198.51.100.10:50051", as: &owner{1337, 1337}},
		conn{addr: "[2001:db8::10]:50051", as: &owner{1337, 1337}},
		conn{addr: "198.51.100.10:50051", as: &owner{1337, 2000}},
		conn{addr: "198.51.100.10:50051", as: &owner{2000, 1337}},
		conn{addr: "198.51.100.10:50051", as: &owner{2000, 2000}, redirected: true}, // an app user
		conn{addr: "198.51.100.10:50051", as: &owner{1338, 1338}, redirected: true},
	)
}

func TestCustomProxyIdentityAndPort(t *testing.T) {
	needOtherUsers(t)
	if !netnstest.RunTest(t) {
		return
	}
	newPod(t, Config{ProxyPort: proxyPort, ProxyUID: 4242, ProxyGID: 4343}).expect(
		conn{addr: "198.51.100.10:50051", as: &owner{4242, 0}},
		conn{addr: "198.51.100.10:50051", as: &owner{1000, 4343}},
		conn{addr: "198.51.100.10:50051", as: &owner{1337, 1337}, redirected: true}, // nobody special now
	)
}

func TestExcludedPortsAndCIDRs(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "8080,9090")
	// Prefixes ending inside a byte, so the masked match is exercised.
	cfg.ExcludeCIDRs = mustCIDRs(t, "203.0.113.0/25,2001:db8:fffe::/47")
	newPod(t, cfg).expect(
		conn{addr: "198.51.100.10:8080"},
		conn{addr: "198.51.100.10:9090"},
		conn{addr: "[2001:db8::10]:9090"},
		conn{addr: "203.0.113.10:50051"},
		conn{addr: "[2001:db8:ffff::10]:50051"},
		conn{addr: "198.51.100.10:50051", redirected: true},
		conn{addr: "[2001:db8::10]:50051", redirected: true}, // outside the excluded /47
		conn{addr: "198.51.100.10:8081", redirected: true},
	)
}

func TestIncludeCIDRsLimitCapture(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	cfg := DefaultConfig()
	cfg.IncludeCIDRs = mustCIDRs(t, "198.51.100.16/28,2001:db8::/61")
	cfg.ExcludeCIDRs = mustCIDRs(t, "198.51.100.21") // exclusion wins inside an included range
	cfg.ExcludePorts = mustPorts(t, "8080")
	newPod(t, cfg).expect(
		conn{addr: "198.51.100.20:50051", redirected: true},
		conn{addr: "[2001:db8::10]:50051", redirected: true},
		conn{addr: "198.51.100.10:50051"},       // outside the included /28
		conn{addr: "203.0.113.10:50051"},        // outside the included ranges
		conn{addr: "192.0.2.10:50051"},          // outside the included ranges
		conn{addr: "[2001:db8:ffff::10]:50051"}, // outside the included /61
		conn{addr: "198.51.100.21:50051"},       // included but excluded
		conn{addr: "198.51.100.20:8080"},        // included but an excluded port
		conn{addr: "127.0.0.1:50051"},
	)
}

// TestIncludeWholeFamilies: 0.0.0.0/0 alone captures IPv4 and leaves IPv6
// alone, ::/0 the reverse, "*" captures both.
func TestIncludeWholeFamilies(t *testing.T) {
	for _, tc := range []struct {
		name, include string
		v4, v6        bool
	}{
		{"ipv4", "0.0.0.0/0", true, false},
		{"ipv6", "::/0", false, true},
		{"star", "*", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !netnstest.RunTest(t) {
				return
			}
			cfg := DefaultConfig()
			cfg.IncludeCIDRs = mustCIDRs(t, tc.include)
			newPod(t, cfg).expect(
				conn{addr: "203.0.113.10:50051", redirected: tc.v4},
				conn{addr: "[2001:db8::10]:50051", redirected: tc.v6},
			)
		})
	}
}

// TestApplyReplacesTheTable applies three times, then another config: the
// chain holds one copy of the rules of the last Apply.
func TestApplyReplacesTheTable(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "8080,9090")
	cfg.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/8,fd00::/8")
	p := newPod(t, cfg)
	// 6 fixed rules (TCP only, UID, GID, two loopback, DNS), one for the
	// port set, two CIDRs, the final redirect.
	wantRules(t, 10)
	start := time.Now()
	p.apply(cfg)
	p.apply(cfg)
	t.Logf("Apply took %v on average", time.Since(start)/2)
	wantRules(t, 10)
	p.expect(conn{addr: "198.51.100.10:50051", redirected: true}, conn{addr: "198.51.100.10:8080"})

	cfg.ExcludePorts = nil
	p.apply(cfg)
	wantRules(t, 9)
	p.expect(conn{addr: "198.51.100.10:8080", redirected: true})
}

func wantRules(t *testing.T, want int) {
	t.Helper()
	n, found, err := Installed()
	if err != nil || !found || n != want {
		t.Errorf("Installed() = %d rules, found %v, error %v; want %d rules", n, found, err, want)
	}
}

func TestInstalledWithoutTable(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	if n, found, err := Installed(); n != 0 || found || err != nil {
		t.Errorf("Installed() in a fresh namespace = %d, %v, %v; want 0, false, nil", n, found, err)
	}
}

// TestInboundIsUntouched connects from another namespace into the pod:
// its servers answer on their own ports, replies included, while the pod's
// own outbound connections are still captured.
func TestInboundIsUntouched(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	p := newPod(t, DefaultConfig())
	// More specific than the loopback routes, so these go over the link.
	peer, err := netns.NewPeer("veth",
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.129/25"), netip.MustParsePrefix("2001:db8:aaaa::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.130/25"), netip.MustParsePrefix("2001:db8:aaaa::2/64")})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, addr := range []string{"192.0.2.129:50051", "[2001:db8:aaaa::1]:50051", "192.0.2.129:15021"} {
		dst := netip.MustParseAddrPort(addr)
		p.serve(dst.Port())
		var port int
		var orig string
		err := peer.Do(func() (err error) { port, orig, err = dialAndRead(netip.Addr{}, addr); return err })
		if err != nil || port != int(dst.Port()) || orig != dst.String() {
			t.Errorf("inbound connection to %s arrived at port %d with original destination %s (error %v); want port %d with %s",
				addr, port, orig, err, dst.Port(), dst)
		}
	}
	p.expect(conn{addr: "198.51.100.10:50051", redirected: true})
}

// TestKernelAgreesWithDryRun loads the rules through netlink and lists them
// with the nft tool: the listing must equal the dry-run text. Then it loads
// the dry-run text with `nft -f`: the kernel must hold the very same
// expressions as after Apply.
func TestKernelAgreesWithDryRun(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipped: needs the nft tool (Debian package nftables) to read the rules back")
	}
	if !netnstest.RunTest(t) {
		return
	}
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "9090,8080,15020")
	cfg.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/8,172.16.0.0/12,fc00::/7,2001:db8::/33,192.0.2.1")
	cfg.IncludeCIDRs = mustCIDRs(t, "10.96.0.0/12,2001:db8::/32,0.0.0.0/0,::1")
	rs := (&pod{t: t}).apply(cfg)

	if got := nft(t, "", "list", "table", "inet", TableName); got != rs.tableText() {
		t.Errorf("nft list table differs from the dry-run text:\n--- nft\n%s\n--- dry run\n%s", got, rs.tableText())
	}
	applied := stripHandles(nft(t, "", "--debug=netlink", "list", "table", "inet", TableName))
	nft(t, rs.String(), "-f", "-")
	reloaded := stripHandles(nft(t, "", "--debug=netlink", "list", "table", "inet", TableName))
	if applied != reloaded {
		t.Errorf("expressions from Apply and from `nft -f` of the dry run differ:\n--- Apply\n%s\n--- nft -f\n%s", applied, reloaded)
	}
}

func nft(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, b)
	}
	return string(b)
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

// TestApplyWithoutPermission applies from a socket without CAP_NET_ADMIN
// and expects the hint that says what the init container lacks.
func TestApplyWithoutPermission(t *testing.T) {
	needOtherUsers(t)
	if !netnstest.RunTest(t) {
		return
	}
	rs, err := Build(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	err = netns.AsUser(1337, 1337, rs.Apply)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("Apply as an unprivileged user: error %v, want EPERM with the CAP_NET_ADMIN hint", err)
	}
	if _, found, _ := Installed(); found {
		t.Error("a refused Apply left a table behind")
	}
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

// TestCheckFindsMissingAndChangedRules: Check accepts exactly what Apply
// installed, and names a removed table, a removed rule and a changed one.
func TestCheckFindsMissingAndChangedRules(t *testing.T) {
	if !netnstest.RunTest(t) {
		return
	}
	cfg := DefaultConfig()
	cfg.ExcludePorts = mustPorts(t, "8080,9090")
	cfg.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/8,fc00::/7")
	cfg.IncludeCIDRs = mustCIDRs(t, "10.96.0.0/12")
	rs, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Check(); err == nil || !strings.Contains(err.Error(), "table inet tandem is missing") {
		t.Errorf("Check before Apply: %v, want the missing table", err)
	}
	if err := rs.Apply(); err != nil {
		t.Fatal(err)
	}
	if err := rs.Check(); err != nil {
		t.Fatalf("Check right after Apply: %v", err)
	}
	// Other exclusions: same number of rules, one port set differs.
	other := cfg
	other.ExcludePorts = mustPorts(t, "8080,9091")
	ors, err := Build(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := ors.Check(); err == nil || !strings.Contains(err.Error(), `rule 7 of chain output is not "tcp dport { 8080, 9091 } return`) {
		t.Errorf("Check of other ports: %v, want rule 7 named", err)
	}
	other = cfg
	other.ExcludeCIDRs = mustCIDRs(t, "10.0.0.0/9,fc00::/7")
	if ors, err = Build(other); err != nil {
		t.Fatal(err)
	}
	if err := ors.Check(); err == nil || !strings.Contains(err.Error(), "rule 8 ") {
		t.Errorf("Check of another CIDR: %v, want rule 8 named", err)
	}
	deleteRule(t, 3)
	if err := rs.Check(); err == nil || !strings.Contains(err.Error(), "holds 9 rules, want 10") {
		t.Errorf("Check after a rule was deleted: %v", err)
	}
}

// deleteRule removes the n-th rule of the capture chain, as an operator's
// `nft delete rule` would.
func deleteRule(t *testing.T, n int) {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	rules, err := conn.GetRules(tbl, &nftables.Chain{Name: ChainName, Table: tbl})
	if err != nil || len(rules) < n {
		t.Fatalf("reading the rules: %d rules, %v", len(rules), err)
	}
	if err := conn.DelRule(rules[n-1]); err != nil {
		t.Fatal(err)
	}
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
}
