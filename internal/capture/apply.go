//go:build linux

package capture

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Apply installs the Ruleset in the current network namespace, replacing
// any table of the same name, in one atomic transaction: either the whole
// new table is in place afterwards or nothing changed.
func (rs *Ruleset) Apply() error {
	conn, err := nftables.New()
	if err != nil {
		return explain(err)
	}
	if err := rs.program(conn); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return explain(err)
	}
	return nil
}

// program queues the transaction on conn without sending it.
func (rs *Ruleset) program(conn *nftables.Conn) error {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table}
	// Adding first makes the delete valid when no table exists yet; the
	// kernel applies the batch as a whole, so no packet sees a gap.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	policy := nftables.ChainPolicyAccept
	priority := nftables.ChainPriority(rs.Priority)
	chain := conn.AddChain(&nftables.Chain{
		Name:     rs.Chain,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: &priority,
		Policy:   &policy,
	})
	addSet := func(s *nftables.Set, elems []nftables.SetElement) error {
		s.Table = t
		return conn.AddSet(s, elems)
	}
	for i, r := range rs.Rules {
		exprs, err := r.exprs(addSet)
		if err != nil {
			return fmt.Errorf("rule %d (%s): %w", i+1, r.text(), err)
		}
		rule := &nftables.Rule{Table: t, Chain: chain, Exprs: exprs}
		if r.Comment != "" {
			rule.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
		}
		conn.AddRule(rule)
	}
	return nil
}

// Hints for the two failures an operator can fix, attached to the error.
const (
	hintPermission = "the capture needs CAP_NET_ADMIN in the pod's network namespace: " +
		"run the init container as root with the NET_ADMIN capability added"
	hintNoNFTables = "the kernel lacks nf_tables NAT support: it needs nf_tables, " +
		"nft_chain_nat and nft_redir (built in or loadable) and Linux 5.2 or newer for NAT in inet tables"
)

// explain adds the operator's next step to the errors that have one.
func explain(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("installing nftables rules: %w (%s)", err, hintPermission)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOENT):
		// No nfnetlink socket, no nf_tables subsystem, or no nat chain type
		// or redir expression: every one means a kernel without the feature.
		return fmt.Errorf("installing nftables rules: %w (%s)", err, hintNoNFTables)
	}
	return fmt.Errorf("installing nftables rules: %w", err)
}

// Installed reads back from the kernel how many rules the capture chain of
// this network namespace holds; found is false when there is no capture
// table.
func Installed() (rules int, found bool, err error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, false, explain(err)
	}
	t, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading table inet %s: %w", TableName, err)
	}
	got, err := conn.GetRules(t, &nftables.Chain{Name: ChainName, Table: t})
	if err != nil {
		return 0, true, fmt.Errorf("reading chain %s of table inet %s: %w", ChainName, TableName, err)
	}
	return len(got), true, nil
}

// Remove deletes the capture table from the current network namespace. A
// namespace without one is not an error: removing twice is harmless.
func Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return explain(err)
	}
	conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting table inet %s: %w", TableName, err)
	}
	return nil
}
