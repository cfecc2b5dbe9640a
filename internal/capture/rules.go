//go:build linux

package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Ruleset is the whole capture configuration: one inet table holding one
// NAT chain on the output hook. String renders it as an `nft -f` script,
// Apply installs it; both read the same Rules.
type Ruleset struct {
	Table    string
	Chain    string
	Priority int32
	Rules    []Rule
}

// Rule is one line of the chain: all Matches must hold for Verdict to apply.
type Rule struct {
	Matches []match
	Verdict verdict
	Comment string
}

// A match is one condition of a rule. Each kind writes its own nft text and
// its own kernel expressions side by side, so the two cannot disagree.
type match interface {
	// text is the condition in nft syntax, as `nft list` prints it.
	text() string
	// exprs are the kernel expressions, leaving the verdict register free.
	exprs(sets setAdder) ([]expr.Any, error)
}

// setAdder declares an anonymous set in the same transaction as the rule
// that looks it up.
type setAdder func(s *nftables.Set, elems []nftables.SetElement) error

// The kernel evaluates every match in register 1; a rule's matches run one
// after the other, so they can share it.
const reg = 1

// l4protoMatch is `meta l4proto tcp`, or `!= tcp` when not is set.
type l4protoMatch struct{ not bool }

func (m l4protoMatch) text() string {
	if m.not {
		return "meta l4proto != tcp"
	}
	return "meta l4proto tcp"
}

func (m l4protoMatch) exprs(setAdder) ([]expr.Any, error) {
	op := expr.CmpOpEq
	if m.not {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: op, Register: reg, Data: []byte{unix.IPPROTO_TCP}},
	}, nil
}

// ownerMatch is `meta skuid N` or `meta skgid N`: the owner of the socket
// that sends the packet.
type ownerMatch struct {
	gid bool
	id  uint32
}

func (m ownerMatch) text() string {
	if m.gid {
		return "meta skgid " + strconv.FormatUint(uint64(m.id), 10)
	}
	return "meta skuid " + strconv.FormatUint(uint64(m.id), 10)
}

func (m ownerMatch) exprs(setAdder) ([]expr.Any, error) {
	key := expr.MetaKeySKUID
	if m.gid {
		key = expr.MetaKeySKGID
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg},
		// The kernel stores the ID in host byte order.
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(m.id)},
	}, nil
}

// daddrMatch is `ip daddr P` or `ip6 daddr P`. A /0 prefix matches the
// whole family (`meta nfproto ipv4`), which is how nft prints it too.
type daddrMatch struct{ prefix netip.Prefix }

// family returns the nft keyword of the address family, its nfproto value
// and name, and the offset of the destination address in its header.
func (m daddrMatch) family() (keyword string, nfproto byte, nfprotoName string, offset uint32) {
	if m.prefix.Addr().Is4() {
		return "ip", unix.NFPROTO_IPV4, "ipv4", 16 // iphdr.daddr
	}
	return "ip6", unix.NFPROTO_IPV6, "ipv6", 24 // ipv6hdr.daddr
}

func (m daddrMatch) text() string {
	name, _, nfprotoName, _ := m.family()
	switch m.prefix.Bits() {
	case 0:
		return "meta nfproto " + nfprotoName
	case m.prefix.Addr().BitLen():
		return name + " daddr " + m.prefix.Addr().String()
	}
	return name + " daddr " + m.prefix.String()
}

func (m daddrMatch) exprs(setAdder) ([]expr.Any, error) {
	_, nfproto, _, offset := m.family()
	// In an inet table the header layout depends on the family, so the
	// family check must come before the address is loaded.
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{nfproto}},
	}
	bits := m.prefix.Bits()
	if bits == 0 {
		return out, nil
	}
	addr := m.prefix.Addr().AsSlice()
	// Encoded the way nft encodes it, so `nft list` prints it back as a
	// prefix: a prefix ending on a byte boundary loads just those bytes;
	// any other loads the whole address and masks it.
	n := len(addr)
	if bits%8 == 0 {
		n = bits / 8
	}
	out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(n)})
	if bits%8 != 0 {
		mask := net.CIDRMask(bits, len(addr)*8)
		out = append(out, &expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: uint32(n), Mask: mask, Xor: make([]byte, n)})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: addr[:n]}), nil
}

// dportMatch is `tcp dport P` for one port, `tcp dport { P, Q }` for more
// (an anonymous constant set, one lookup however long the list).
type dportMatch struct{ ports []uint16 }

func (m dportMatch) text() string {
	if len(m.ports) == 1 {
		return "tcp dport " + strconv.Itoa(int(m.ports[0]))
	}
	items := make([]string, len(m.ports))
	for i, p := range m.ports {
		items[i] = strconv.Itoa(int(p))
	}
	return "tcp dport { " + strings.Join(items, ", ") + " }"
}

func (m dportMatch) exprs(addSet setAdder) ([]expr.Any, error) {
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // tcphdr.dest
	}
	if len(m.ports) == 1 {
		return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.BigEndian.PutUint16(m.ports[0])}), nil
	}
	set := &nftables.Set{Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
	elems := make([]nftables.SetElement, len(m.ports))
	for i, p := range m.ports {
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
	}
	if err := addSet(set, elems); err != nil {
		return nil, fmt.Errorf("set for %s: %w", m.text(), err)
	}
	return append(out, &expr.Lookup{SourceRegister: reg, SetName: set.Name, SetID: set.ID}), nil
}

// verdict is `return` (leave the packet alone), or `redirect to :port`
// when redirectPort is set.
type verdict struct{ redirectPort uint16 }

func (v verdict) text() string {
	if v.redirectPort == 0 {
		return "return"
	}
	return "redirect to :" + strconv.Itoa(int(v.redirectPort))
}

func (v verdict) exprs() []expr.Any {
	if v.redirectPort == 0 {
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}
	}
	port := make([]byte, 2)
	binary.BigEndian.PutUint16(port, v.redirectPort)
	return []expr.Any{
		&expr.Immediate{Register: reg, Data: port},
		// A single port: min and max are the same register, as nft emits.
		&expr.Redir{RegisterProtoMin: reg, RegisterProtoMax: reg, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// text is the whole rule as nft prints it in a chain listing.
func (r Rule) text() string {
	var b strings.Builder
	for _, m := range r.Matches {
		b.WriteString(m.text())
		b.WriteByte(' ')
	}
	b.WriteString(r.Verdict.text())
	if r.Comment != "" {
		fmt.Fprintf(&b, " comment %q", r.Comment)
	}
	return b.String()
}

// exprs is the whole rule as kernel expressions.
func (r Rule) exprs(addSet setAdder) ([]expr.Any, error) {
	var out []expr.Any
	for _, m := range r.Matches {
		e, err := m.exprs(addSet)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	return append(out, r.Verdict.exprs()...), nil
}
