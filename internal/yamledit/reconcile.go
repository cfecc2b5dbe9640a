package yamledit

import (
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// reconcile edits the text node t from the value old to new. inFlow says
// t sits in a flow collection; indent is the column of the block
// collection holding t. It reports a mapping whose every key was removed
// (nothing recorded), for the caller to remove the key holding it.
func (d *Doc) reconcile(t, old, new *yaml.Node, inFlow bool, indent int, path string) (bool, error) {
	if equal(old, new) {
		return false, nil
	}
	if t.Kind == yaml.AliasNode {
		return false, d.errorf(t, "%s is the alias *%s: changing it would change every use of the anchor &%s; write the value out in full instead of the alias", path, t.Value, t.Value)
	}
	if t.Anchor != "" && d.aliased[t.Anchor] {
		return false, d.errorf(t, "%s carries the anchor &%s, which an alias uses elsewhere: changing it would change that use too; write the other use out in full instead of the alias", path, t.Anchor)
	}
	flow := inFlow || t.Style&yaml.FlowStyle != 0
	switch {
	case t.Kind == yaml.MappingNode && new.Kind == yaml.MappingNode:
		if old.Kind != yaml.MappingNode {
			old = &yaml.Node{Kind: yaml.MappingNode}
		}
		return d.mapping(t, old, new, flow, path)
	case t.Kind == yaml.SequenceNode && new.Kind == yaml.SequenceNode:
		if old.Kind != yaml.SequenceNode {
			old = &yaml.Node{Kind: yaml.SequenceNode}
		}
		return false, d.sequence(t, old, new, flow, path)
	}
	return false, d.replace(t, new, inFlow, indent)
}

func (d *Doc) mapping(t, old, new *yaml.Node, flow bool, path string) (bool, error) {
	for i := 0; i < len(t.Content); i += 2 {
		if k := t.Content[i]; k.Tag == "!!merge" {
			return false, d.errorf(k, "%s merges another mapping with <<: the result of changing it cannot be written without changing what it merges; write the keys out in full", path)
		}
	}
	mark := len(d.edits)
	keyCol := d.column(t)
	var gone []int // removed keys
	for i := 0; i < len(t.Content); i += 2 {
		k, v := t.Content[i], t.Content[i+1]
		ov, nv := get(old, k.Value), get(new, k.Value)
		if equal(ov, nv) {
			continue
		}
		if nv == nil {
			gone = append(gone, i)
			continue
		}
		if ov == nil {
			// Written as null or empty, decoded as absent.
			d.lossy = true
			ov = &yaml.Node{Kind: nv.Kind}
		}
		emptied, err := d.reconcile(v, ov, nv, flow, keyCol, strings.TrimPrefix(path+"."+k.Value, "."))
		if err != nil {
			return false, err
		}
		if emptied {
			gone = append(gone, i)
		}
	}
	if err := d.remove(t, gone, flow); err != nil {
		return false, err
	}
	var added []*yaml.Node
	for j := 0; j < len(new.Content); j += 2 {
		k, nv := new.Content[j], new.Content[j+1]
		if get(t, k.Value) != nil {
			continue
		}
		if ov := get(old, k.Value); !equal(ov, nv) {
			added = append(added, k, prune(ov, nv))
		}
	}
	if len(added) > 0 {
		if err := d.addPairs(t, added, flow); err != nil {
			return false, err
		}
	} else if len(gone) > 0 && len(gone) == len(t.Content)/2 {
		d.edits = d.edits[:mark]
		return true, nil
	}
	return false, nil
}

// sequence lines up the items of old and new by name (or by value) and
// edits the items injection inserted, removed or changed.
func (d *Doc) sequence(t, old, new *yaml.Node, flow bool, path string) error {
	if len(t.Content) != len(old.Content) {
		return d.errorf(t, "%s has %d items in the text but %d decoded", path, len(t.Content), len(old.Content))
	}
	ok, nk := itemKeys(old), itemKeys(new)
	inOld, inNew := map[string]bool{}, map[string]bool{}
	for _, k := range ok {
		inOld[k] = true
	}
	for _, k := range nk {
		inNew[k] = true
	}
	var commonOld, commonNew []int
	for i, k := range ok {
		if inNew[k] {
			commonOld = append(commonOld, i)
		}
	}
	for j, k := range nk {
		if inOld[k] {
			commonNew = append(commonNew, j)
		}
	}
	for x := range commonOld {
		if ok[commonOld[x]] != nk[commonNew[x]] {
			return d.errorf(t, "%s: the items changed order, which an edit of the text cannot express", path)
		}
	}
	var gone []int
	for i, k := range ok {
		if !inNew[k] {
			gone = append(gone, i)
		}
	}
	if err := d.remove(t, gone, flow); err != nil {
		return err
	}
	col := d.column(t)
	var run []*yaml.Node
	flush := func(before int) error {
		if len(run) == 0 {
			return nil
		}
		err := d.insertItems(t, before, run, flow)
		run = nil
		return err
	}
	x := 0
	for j, item := range new.Content {
		if x < len(commonNew) && commonNew[x] == j {
			i := commonOld[x]
			x++
			if err := flush(i); err != nil {
				return err
			}
			emptied, err := d.reconcile(t.Content[i], old.Content[i], item, flow, col, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return err
			}
			if emptied {
				return d.errorf(t.Content[i], "%s[%d] would be left empty", path, i)
			}
			continue
		}
		run = append(run, item)
	}
	return flush(len(old.Content))
}

// itemKeys identifies list items: by name when they have one, else by
// value; repeats are numbered.
func itemKeys(list *yaml.Node) []string {
	keys := make([]string, len(list.Content))
	seen := map[string]int{}
	for i, n := range list.Content {
		k := ""
		if name := get(n, "name"); n.Kind == yaml.MappingNode && name != nil && name.Kind == yaml.ScalarNode {
			k = "name " + name.Value
		} else {
			k = "value " + flowJSON(n)
		}
		seen[k]++
		keys[i] = fmt.Sprintf("%s #%d", k, seen[k])
	}
	return keys
}

// get is the value of key in mapping m, nil when absent.
func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func equal(a, b *yaml.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind || len(a.Content) != len(b.Content) {
		return false
	}
	if a.Kind == yaml.ScalarNode && (a.Tag != b.Tag || a.Value != b.Value) {
		return false
	}
	for i := range a.Content {
		if !equal(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// prune keeps of new what differs from old, for a key missing in the text.
func prune(old, new *yaml.Node) *yaml.Node {
	if old == nil || old.Kind != yaml.MappingNode || new.Kind != yaml.MappingNode {
		return new
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for j := 0; j < len(new.Content); j += 2 {
		k, v := new.Content[j], new.Content[j+1]
		if ov := get(old, k.Value); !equal(ov, v) {
			out.Content = append(out.Content, k, prune(ov, v))
		}
	}
	return out
}
