//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"
)

// ErrNotRedirected is the answer of VerifyRedirect when a connection that
// capture must send to the proxy went elsewhere.
var ErrNotRedirected = errors.New("outbound connections are not redirected")

// VerifyRedirect proves from inside a pod, without privileges, that the
// network namespace redirects outbound TCP as c says. It listens on the
// proxy port on every address (the proxy has not started yet), and on a
// decoy port it holds so that nothing else answers there; then it dials a
// destination c redirects for this process's user: one of the pod's own
// addresses at the decoy port, or an address of an included range. Only a
// redirect makes that connection arrive on the proxy port, and it must
// arrive carrying its original destination. The returned error wraps
// ErrNotRedirected when the connection reached the decoy or nothing.
func VerifyRedirect(c Config, timeout time.Duration) (netip.AddrPort, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if uid == c.ProxyUID || gid == c.ProxyGID {
		return netip.AddrPort{}, fmt.Errorf("running as uid %d gid %d, whose connections capture never redirects: run as another user", uid, gid)
	}
	proxy, err := net.Listen("tcp", ":"+strconv.Itoa(int(c.ProxyPort)))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listening on the proxy port: %w", err)
	}
	defer proxy.Close()
	decoy, port, err := listenDecoy(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer decoy.Close()
	dst, err := redirectedDestination(c, uid, gid, port)
	if err != nil {
		return netip.AddrPort{}, err
	}

	type arrival struct {
		onProxy bool
		orig    netip.AddrPort
		err     error
	}
	arrived := make(chan arrival, 2)
	accept := func(ln net.Listener, onProxy bool) {
		conn, err := ln.Accept()
		if err != nil {
			return // closed on return
		}
		defer conn.Close()
		a := arrival{onProxy: onProxy}
		if onProxy {
			a.orig, a.err = OriginalDst(conn.(*net.TCPConn))
		}
		arrived <- a
	}
	go accept(proxy, true)
	go accept(decoy, false)

	conn, err := net.DialTimeout("tcp", dst.String(), timeout)
	if err != nil {
		return dst, fmt.Errorf("%w: a connection to %s failed (%v) instead of reaching port %d", ErrNotRedirected, dst, err, c.ProxyPort)
	}
	defer conn.Close()
	select {
	case a := <-arrived:
		switch {
		case !a.onProxy:
			return dst, fmt.Errorf("%w: a connection to %s reached that address directly instead of port %d", ErrNotRedirected, dst, c.ProxyPort)
		case a.err != nil:
			return dst, fmt.Errorf("a connection to %s reached port %d, but its original destination is unknown: %w", dst, c.ProxyPort, a.err)
		case a.orig != dst:
			return dst, fmt.Errorf("a connection to %s reached port %d with original destination %s, want %s", dst, c.ProxyPort, a.orig, dst)
		}
		return dst, nil
	case <-time.After(timeout):
		return dst, fmt.Errorf("%w: a connection to %s was accepted by something other than port %d", ErrNotRedirected, dst, c.ProxyPort)
	}
}

// listenDecoy holds a port on every address that c redirects: not DNS,
// not excluded, not the proxy's.
func listenDecoy(c Config) (net.Listener, uint16, error) {
	for range 20 {
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, 0, fmt.Errorf("listening on a decoy port: %w", err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		if port != dnsPort && port != c.ProxyPort && !slices.Contains(c.ExcludePorts, port) {
			return ln, port, nil
		}
		ln.Close()
	}
	return nil, 0, fmt.Errorf("no ephemeral port outside the excluded ports %v", c.ExcludePorts)
}

// redirectedDestination picks the address to dial: the pod's own addresses
// first (a connection to them never leaves the pod), then the first address
// of each included range.
func redirectedDestination(c Config, uid, gid uint32, port uint16) (netip.AddrPort, error) {
	var candidates []netip.Addr
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listing the pod's addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
				candidates = append(candidates, ip.Unmap())
			}
		}
	}
	for _, p := range c.IncludeCIDRs {
		if a := p.Addr(); p.Bits() < a.BitLen() {
			candidates = append(candidates, a.Next())
		} else {
			candidates = append(candidates, a)
		}
	}
	for _, a := range candidates {
		if dst := netip.AddrPortFrom(a, port); c.Redirects(uid, gid, dst) {
			return dst, nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("the capture settings redirect none of the addresses to test (%v, at port %d): nothing to verify", candidates, port)
}
