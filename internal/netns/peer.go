package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Peer is a second network namespace joined to the current one by a veth
// pair: another pod or node that connects in from outside.
type Peer struct {
	held *Held
	ns   vnetns.NsHandle
}

// NewPeer makes a network namespace linked to the current one by a veth
// pair named after link ("<link>0" here, "<link>1" there); local and remote
// are the addresses, with prefix lengths, of the two ends. Close removes it.
func NewPeer(link string, local, remote []netip.Prefix) (*Peer, error) {
	held, err := Hold()
	if err != nil {
		return nil, fmt.Errorf("creating the peer namespace: %w", err)
	}
	p := &Peer{held: held, ns: -1}
	fail := func(err error) (*Peer, error) { return nil, errors.Join(err, p.Close()) }
	ns, err := vnetns.GetFromPath(held.Path)
	if err != nil {
		return fail(fmt.Errorf("opening the peer namespace: %w", err))
	}
	p.ns = ns
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: link + "0"}, PeerName: link + "1", PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fail(fmt.Errorf("creating the veth pair %s: %w", link, err))
	}
	if err := configure(netlink.Handle{}, link+"0", local); err != nil {
		return fail(err)
	}
	there, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fail(fmt.Errorf("netlink in the peer namespace: %w", err))
	}
	defer there.Close()
	if err := configure(*there, "lo", nil); err != nil {
		return fail(err)
	}
	if err := configure(*there, link+"1", remote); err != nil {
		return fail(err)
	}
	// Until the kernel's link watcher marks both ends up (it batches such
	// events for up to a second), packets are dropped, not queued.
	for _, end := range []struct {
		h    netlink.Handle
		name string
	}{{netlink.Handle{}, link + "0"}, {*there, link + "1"}} {
		if err := waitOperUp(end.h, end.name); err != nil {
			return fail(err)
		}
	}
	return p, nil
}

func waitOperUp(h netlink.Handle, dev string) error {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("link %s: %w", dev, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
	}
	return fmt.Errorf("link %s did not come up", dev)
}

// configure adds addrs to the link named dev and brings it up. IPv6
// addresses skip duplicate address detection: nothing else is on the link.
func configure(h netlink.Handle, dev string, addrs []netip.Prefix) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("link %s: %w", dev, err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a.String())
		if err != nil {
			return err
		}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("adding %s to %s: %w", a, dev, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", dev, err)
	}
	return nil
}

// Do runs fn on an OS thread of its own that has entered the peer's
// namespace: sockets fn opens live there.
func (p *Peer) Do(fn func() error) error { return doIn(p.ns, fn) }

// Close ends the peer namespace and with it the veth pair.
func (p *Peer) Close() error {
	if p.ns >= 0 {
		p.ns.Close()
	}
	return p.held.Close()
}
