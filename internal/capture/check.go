//go:build linux

package capture

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Check compares the capture table of the current network namespace with
// rs, rule by rule and expression by expression (a port set by its
// elements); the error names the first difference.
func (rs *Ruleset) Check() error {
	conn, err := nftables.New()
	if err != nil {
		return explain(err)
	}
	t, err := conn.ListTableOfFamily(rs.Table, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("table inet %s is missing", rs.Table)
	}
	if err != nil {
		return fmt.Errorf("reading table inet %s: %w", rs.Table, err)
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("reading the chains of table inet %s: %w", rs.Table, err)
	}
	i := slices.IndexFunc(chains, func(c *nftables.Chain) bool { return c.Table.Name == rs.Table && c.Name == rs.Chain })
	if i < 0 {
		return fmt.Errorf("chain %s of table inet %s is missing", rs.Chain, rs.Table)
	}
	if c := chains[i]; c.Type != nftables.ChainTypeNAT || c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookOutput ||
		c.Priority == nil || int32(*c.Priority) != rs.Priority {
		return fmt.Errorf("chain %s of table inet %s is not a nat chain on the output hook at priority %d", rs.Chain, rs.Table, rs.Priority)
	}
	got, err := conn.GetRules(t, &nftables.Chain{Name: rs.Chain, Table: t})
	if err != nil {
		return fmt.Errorf("reading chain %s of table inet %s: %w", rs.Chain, rs.Table, err)
	}
	if len(got) != len(rs.Rules) {
		return fmt.Errorf("chain %s of table inet %s holds %d rules, want %d", rs.Chain, rs.Table, len(got), len(rs.Rules))
	}
	for i, r := range rs.Rules {
		sets := map[string][]nftables.SetElement{}
		var n int
		want, err := r.exprs(func(s *nftables.Set, elems []nftables.SetElement) error {
			s.Name = fmt.Sprintf("want%d", n)
			n++
			sets[s.Name] = elems
			return nil
		})
		if err != nil {
			return err
		}
		wantSet := func(name string) ([]nftables.SetElement, error) { return sets[name], nil }
		gotSet := func(name string) ([]nftables.SetElement, error) {
			s, err := conn.GetSetByName(t, name)
			if err != nil {
				return nil, fmt.Errorf("reading set %s: %w", name, err)
			}
			return conn.GetSetElements(s)
		}
		w, err := normalize(want, wantSet)
		if err != nil {
			return err
		}
		g, err := normalize(got[i].Exprs, gotSet)
		if err != nil {
			return err
		}
		comment, _ := userdata.GetString(got[i].UserData, userdata.TypeComment)
		if !reflect.DeepEqual(w, g) || comment != r.Comment {
			return fmt.Errorf("rule %d of chain %s is not %q", i+1, rs.Chain, r.text())
		}
	}
	return nil
}

// lookupOf stands for a set lookup by what the set holds.
type lookupOf struct {
	register uint32
	keys     [][]byte
}

// normalize replaces each set lookup by the set's sorted elements, since
// anonymous set names are assigned by the kernel.
func normalize(exprs []expr.Any, elements func(string) ([]nftables.SetElement, error)) ([]any, error) {
	out := make([]any, len(exprs))
	for i, e := range exprs {
		l, ok := e.(*expr.Lookup)
		if !ok {
			out[i] = e
			continue
		}
		elems, err := elements(l.SetName)
		if err != nil {
			return nil, err
		}
		lo := lookupOf{register: l.SourceRegister}
		for _, el := range elems {
			lo.keys = append(lo.keys, el.Key)
		}
		slices.SortFunc(lo.keys, bytes.Compare)
		out[i] = lo
	}
	return out, nil
}
