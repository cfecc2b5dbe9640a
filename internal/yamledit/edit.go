package yamledit

import (
	"bytes"
	"encoding/json"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

func (d *Doc) add(start, end int, text string) {
	d.edits = append(d.edits, Edit{Start: start, End: end, Text: text})
}

// insertLines inserts whole lines at the start of a line; at the end of a
// text without a final line break, the break goes first.
func (d *Doc) insertLines(p int, text string) {
	if p == len(d.src) && p > 0 && d.src[p-1] != '\n' {
		text = d.nl + strings.TrimSuffix(text, d.nl)
	}
	d.add(p, p, text)
}

// span is where item i of collection t (a key or an item) starts and ends.
func (d *Doc) span(t *yaml.Node, first, last int) (int, int, error) {
	e, err := d.end(t.Content[last], d.column(t))
	return d.offset(t.Content[first]), e, err
}

// removeFlow removes the entries first..last of a flow collection with the
// comma that separates them from their neighbour.
func (d *Doc) removeFlow(t *yaml.Node, first, last int) error {
	s, e, err := d.span(t, first, last)
	if err != nil {
		return err
	}
	switch {
	case last+1 < len(t.Content):
		e = d.offset(t.Content[last+1])
	case first > 0:
		if s, err = d.end(t.Content[first-1], d.column(t)); err != nil {
			return err
		}
	}
	d.add(s, e, "")
	return nil
}

// remove removes the entries at the given indexes of t.Content (keys, for
// a mapping), consecutive ones together so that a flow collection keeps
// its commas right.
func (d *Doc) remove(t *yaml.Node, idx []int, flow bool) error {
	per := 1
	if t.Kind == yaml.MappingNode {
		per = 2
	}
	for len(idx) > 0 {
		n := 1
		for n < len(idx) && idx[n] == idx[n-1]+per {
			n++
		}
		var err error
		switch {
		case flow:
			err = d.removeFlow(t, idx[0], idx[n-1]+per-1)
		case per == 2:
			for _, i := range idx[:n] {
				if err = d.removePair(t, i); err != nil {
					break
				}
			}
		default:
			for _, i := range idx[:n] {
				if err = d.removeItem(t, i); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
		idx = idx[n:]
	}
	return nil
}

func (d *Doc) removePair(t *yaml.Node, i int) error {
	s, e, err := d.span(t, i, i+1)
	if err != nil {
		return err
	}
	if onlySpaceBefore(d.src, s) {
		d.removeLines(s, e)
		return nil
	}
	// The first key of a sequence item, after its "-": the next key moves up.
	if i+2 < len(t.Content) {
		d.add(s, d.offset(t.Content[i+2]), "")
		return nil
	}
	return d.errorf(t.Content[i], "cannot remove %s, the only key of a sequence item", t.Content[i].Value)
}

func (d *Doc) removeItem(t *yaml.Node, i int) error {
	p, ok := d.dash(t.Content[i])
	if !ok || !onlySpaceBefore(d.src, p) {
		return d.errorf(t.Content[i], "cannot find the line of this sequence item")
	}
	e, err := d.end(t.Content[i], d.column(t))
	if err != nil {
		return err
	}
	d.removeLines(p, e)
	return nil
}

// removeLines removes the lines holding s to e.
func (d *Doc) removeLines(s, e int) {
	d.add(lineStart(d.src, s), nextLine(d.src, e), "")
}

// insertItems inserts items before item i of sequence t (after the last
// one when i is its length).
func (d *Doc) insertItems(t *yaml.Node, i int, items []*yaml.Node, flow bool) error {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: items}
	if flow {
		return d.insertFlow(t, i, items)
	}
	col := d.column(t)
	text := d.block(seq, col)
	if i < len(t.Content) {
		p, ok := d.dash(t.Content[i])
		if !ok {
			return d.errorf(t.Content[i], "cannot find the line of this sequence item")
		}
		// Above the comment lines that introduce the item.
		bound := 0
		if i > 0 {
			e, err := d.end(t.Content[i-1], col)
			if err != nil {
				return err
			}
			bound = nextLine(d.src, e)
		}
		ls := lineStart(d.src, p)
		for ls > bound {
			prev := lineStart(d.src, ls-1)
			if !bytes.HasPrefix(bytes.TrimLeft(d.src[prev:ls], " \t"), []byte("#")) {
				break
			}
			ls = prev
		}
		d.add(ls, ls, text)
		return nil
	}
	e, err := d.end(t.Content[len(t.Content)-1], col)
	if err != nil {
		return err
	}
	d.insertLines(nextLine(d.src, e), text)
	return nil
}

// addPairs adds keys (key, value, key, value...) at the end of mapping t.
func (d *Doc) addPairs(t *yaml.Node, pairs []*yaml.Node, flow bool) error {
	if flow {
		return d.insertFlow(t, len(t.Content), pairs)
	}
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: pairs}
	col := d.column(t)
	e, err := d.end(t.Content[len(t.Content)-1], col)
	if err != nil {
		return err
	}
	d.insertLines(nextLine(d.src, e), d.block(m, col))
	return nil
}

// insertFlow inserts entries (items, or key-value pairs of a mapping)
// before entry i of the flow collection t as JSON: on lines of their own
// when the collection has its entries on lines of their own.
func (d *Doc) insertFlow(t *yaml.Node, i int, entries []*yaml.Node) error {
	per := 1
	if t.Kind == yaml.MappingNode {
		per = 2
	}
	sep, prefix, step := ", ", "", ""
	if len(t.Content) > 0 {
		open, first := d.body(t), d.offset(t.Content[0])
		if d.lineOf(open) != d.lineOf(first) {
			col := first - lineStart(d.src, first)
			outer := lineStart(d.src, open)
			indent := len(d.src[outer:open]) - len(bytes.TrimLeft(d.src[outer:open], " "))
			prefix = strings.Repeat(" ", col)
			step = strings.Repeat(" ", max(col-indent, 1))
			sep = "," + d.nl + prefix
		}
	}
	var parts []string
	for j := 0; j < len(entries); j += per {
		var s string
		if per == 2 {
			s = flowJSON(entries[j]) + ": " + pretty(entries[j+1], prefix, step, d.nl)
		} else {
			s = pretty(entries[j], prefix, step, d.nl)
		}
		parts = append(parts, s)
	}
	text := strings.Join(parts, sep)
	switch {
	case len(t.Content) == 0:
		p := d.body(t) + 1
		d.add(p, p, text)
	case i < len(t.Content):
		p := d.offset(t.Content[i])
		d.add(p, p, text+sep)
	default:
		e, err := d.end(t.Content[len(t.Content)-1], d.column(t))
		if err != nil {
			return err
		}
		d.add(e, e, sep+text)
	}
	return nil
}

// replace writes new in place of the text of t.
func (d *Doc) replace(t, new *yaml.Node, inFlow bool, indent int) error {
	s := d.offset(t)
	e, err := d.end(t, indent)
	if err != nil {
		return err
	}
	switch {
	case inFlow:
		d.add(s, e, flowJSON(new))
	case new.Kind == yaml.ScalarNode:
		d.add(s, e, d.scalar(new))
	default:
		// A collection under a key: on the lines below it.
		col := indent + d.step
		if new.Kind == yaml.SequenceNode && d.flush {
			col = indent
		}
		d.add(s, e, d.nl+strings.TrimSuffix(d.block(new, col), d.nl))
	}
	return nil
}

// block renders n in block style, every line indented by col spaces.
func (d *Doc) block(n *yaml.Node, col int) string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(d.step)
	if d.flush {
		enc.CompactSeqIndent()
	}
	// Encoding a tree of plain nodes into a buffer cannot fail.
	_ = enc.Encode(plain(n))
	_ = enc.Close()
	pad := strings.Repeat(" ", col)
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line == "" {
			continue
		}
		if line != "\n" {
			out.WriteString(pad)
		}
		out.WriteString(strings.TrimSuffix(line, "\n"))
		out.WriteString(d.nl)
	}
	return out.String()
}

// scalar renders a scalar on one line.
func (d *Doc) scalar(n *yaml.Node) string {
	c := plain(n)
	if strings.Contains(n.Value, "\n") {
		c.Style = yaml.DoubleQuotedStyle
	}
	out, _ := yaml.Marshal(c)
	return strings.TrimSuffix(string(out), "\n")
}

// yaml11 are strings a YAML 1.1 parser (Kubernetes' own) reads as
// booleans: they must be quoted.
var yaml11 = map[string]bool{}

func init() {
	for _, s := range []string{"y", "yes", "n", "no", "on", "off", "true", "false", "null", "~"} {
		yaml11[s], yaml11[strings.ToUpper(s)], yaml11[strings.ToUpper(s[:1])+s[1:]] = true, true, true
	}
}

// plain copies a tree decoded from JSON without its quoting, so the
// encoder quotes only what needs it.
func plain(n *yaml.Node) *yaml.Node {
	c := *n
	c.Style = 0
	if c.Tag == "!!str" && yaml11[c.Value] {
		c.Style = yaml.DoubleQuotedStyle
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, x := range n.Content {
		c.Content[i] = plain(x)
	}
	return &c
}

// flowJSON renders n as compact JSON.
func flowJSON(n *yaml.Node) string {
	var b strings.Builder
	writeJSON(&b, n)
	return b.String()
}

func pretty(n *yaml.Node, prefix, step, nl string) string {
	s := flowJSON(n)
	if step == "" {
		return s
	}
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), prefix, step); err != nil {
		return s
	}
	return strings.ReplaceAll(b.String(), "\n", nl)
}

func writeJSON(b *strings.Builder, n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, n.Content[i].Value)
			b.WriteByte(':')
			writeJSON(b, n.Content[i+1])
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, c)
		}
		b.WriteByte(']')
	default:
		switch n.Tag {
		case "!!int", "!!float", "!!bool", "!!null":
			b.WriteString(n.Value)
		default:
			writeString(b, n.Value)
		}
	}
}

func writeString(b *strings.Builder, s string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}
