// Package kubeproxy stands in for kube-proxy on one machine: the nftables
// rules that make a Service's cluster IP reach its endpoints, one endpoint
// per connection, as a node's kube-proxy does. The demo and the balancing
// benchmark use it to show what a gRPC client gets without Tandem.
package kubeproxy

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// table is the nftables table standing in for kube-proxy.
const table = "tandem-kube-proxy"

// InstallClusterIP makes every new TCP connection to vip:port land on one of
// backends (all on targetPort), picked at random per connection: what
// kube-proxy's nftables mode does on a node. A gRPC client's single HTTP/2
// connection therefore sticks to one backend, which is the problem Tandem
// solves. It returns a function that removes the rules.
func InstallClusterIP(vip netip.Addr, port uint16, backends []netip.Addr, targetPort uint16) (func() error, error) {
	if !vip.Is4() {
		return nil, fmt.Errorf("cluster IP %s: only IPv4 is supported here", vip)
	}
	if len(backends) == 0 {
		return nil, fmt.Errorf("cluster IP %s:%d has no backends", vip, port)
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	t := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: table})
	chain := conn.AddChain(&nftables.Chain{
		Name:     "output",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityNATDest,
	})
	pick := &nftables.Set{
		Table:     t,
		Anonymous: true,
		Constant:  true,
		IsMap:     true,
		KeyType:   nftables.TypeInteger,
		DataType:  nftables.TypeIPAddr,
	}
	elems := make([]nftables.SetElement, 0, len(backends))
	for i, b := range backends {
		if !b.Is4() {
			return nil, fmt.Errorf("backend %s: only IPv4 is supported here", b)
		}
		ip := b.As4()
		elems = append(elems, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: ip[:]})
	}
	if err := conn.AddSet(pick, elems); err != nil {
		return nil, err
	}
	vip4 := vip.As4()
	conn.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip4[:]},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Numgen{Register: 1, Modulus: uint32(len(backends)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: pick.Name, SetID: pick.ID},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(targetPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("installing the cluster IP rules for %s:%d: %w", vip, port, err)
	}
	return func() error {
		conn.DelTable(t)
		return conn.Flush()
	}, nil
}
