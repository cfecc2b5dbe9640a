// Package netns runs the current program again inside a fresh network
// namespace of its own, and configures that namespace's loopback. Tests and
// the demo use it to give servers real addresses, install nftables rules and
// capture traffic without touching the machine's network. At enters an
// existing namespace by path, as the CNI plugin enters a pod's.
package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed process.
const childEnv = "TANDEM_IN_NETNS"

// InChild reports whether this process is the one Command started.
func InChild() bool { return os.Getenv(childEnv) == "1" }

// Command returns a command running this program with args in a new network
// namespace: as root directly, otherwise inside a new user namespace that
// maps the caller to root (where the kernel allows unprivileged ones).
func Command(args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	return cmd, nil
}

// Available reports whether Command can work here; the error says why not.
func Available() error {
	cmd, err := Command()
	if err != nil {
		return err
	}
	// Run /bin/true rather than ourselves: only the namespace creation is tested.
	cmd.Path, cmd.Args = "/bin/true", []string{"/bin/true"}
	if err := cmd.Run(); err != nil {
		if os.Geteuid() != 0 {
			return fmt.Errorf("cannot create a network namespace: not root, and unprivileged user namespaces are refused (%v)", err)
		}
		return fmt.Errorf("cannot create a network namespace: %v", err)
	}
	return nil
}

// Setup brings loopback up in the current network namespace, adds each of
// addrs to it and routes each of routes through it, so servers can listen
// on those addresses and clients can reach destinations in those ranges.
func Setup(addrs []netip.Addr, routes []netip.Prefix) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing loopback up: %w", err)
	}
	for _, a := range addrs {
		p := netip.PrefixFrom(a, a.BitLen())
		addr, err := netlink.ParseAddr(p.String())
		if err != nil {
			return err
		}
		if a.Is6() {
			addr.Flags |= unix.IFA_F_NODAD // nothing to detect on loopback
		}
		if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("adding %s to loopback: %w", p, err)
		}
	}
	for _, r := range routes {
		_, dst, err := net.ParseCIDR(r.Masked().String())
		if err != nil {
			return err
		}
		route := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteAdd(route); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("routing %s through loopback: %w", r, err)
		}
	}
	for _, a := range addrs {
		if a.Is6() {
			if err := waitUsable(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitUsable returns once a TCP connection to a on a new listener works.
// The kernel finishes an IPv6 address (its local route, the end of its
// tentative state) in a work queue after the netlink call returns, so under
// load a bind or connect right after AddrAdd can fail.
func waitUsable(a netip.Addr) error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var ln net.Listener
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(a, 0).String()); err != nil {
			continue
		}
		var c net.Conn
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond) // loopback: instant once usable
		ln.Close()
		if err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("address %s on loopback is not usable: %w", a, err)
}
