//go:build linux

package capture

import (
	"fmt"
	"strings"
)

// String renders the Ruleset as an `nft -f` script that does exactly what
// Apply does, in the same single transaction: create the table if it is
// missing, delete it, and define it anew.
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Outbound TCP capture. Rules run in order; the first whose conditions all\n")
	fmt.Fprintf(&b, "# hold decides: \"return\" leaves the connection alone, \"redirect\" sends it\n")
	fmt.Fprintf(&b, "# to the proxy; a connection that no rule decides is left alone (policy\n")
	fmt.Fprintf(&b, "# accept). Inbound traffic never passes through this chain.\n")
	fmt.Fprintf(&b, "# Applied as one transaction that replaces the table, so running it twice\n")
	fmt.Fprintf(&b, "# leaves one copy.\n")
	fmt.Fprintf(&b, "add table inet %s\n", rs.Table)
	fmt.Fprintf(&b, "delete table inet %s\n", rs.Table)
	b.WriteString(rs.tableText())
	return b.String()
}

// tableText is the table definition alone, laid out as `nft list table`
// prints it.
func (rs *Ruleset) tableText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", rs.Table)
	fmt.Fprintf(&b, "\tchain %s {\n", rs.Chain)
	fmt.Fprintf(&b, "\t\ttype nat hook output priority %d; policy accept;\n", rs.Priority)
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "\t\t%s\n", r.text())
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
