// Package yamledit changes the text of a YAML document so that a part of it
// holds a new value, rewriting nothing else: comments, key order, quoting,
// flow or block style, number spellings and line endings of everything it
// does not have to change stay byte for byte as they were.
//
// The caller says what changed by giving the old and the new value of a
// node as JSON; the differences injection makes (list items inserted or
// removed, keys added or removed, a scalar replaced) become edits of the
// text. New text takes the indentation and sequence style of the document
// in block context, and is JSON in flow context (JSON input stays JSON).
package yamledit

import (
	"bytes"
	"fmt"
	"slices"

	yaml "go.yaml.in/yaml/v3"
)

// Edit replaces Src[Start:End] of the document by Text.
type Edit struct {
	Start, End int
	Text       string
}

// Doc is one YAML document being edited.
type Doc struct {
	src   []byte
	root  *yaml.Node
	lines []int // offset of each line's start
	nl    string
	step  int  // indentation of nested mappings
	flush bool // sequences in mappings start at the key's column

	aliased map[string]bool // anchors some alias refers to
	edits   []Edit
	// lossy: a null or empty value was filled, which removing the
	// additions again cannot tell apart from an absent one.
	lossy bool
}

// Error is a change the text cannot take; Line is in the document.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

func (d *Doc) errorf(n *yaml.Node, format string, args ...any) error {
	return &Error{Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses one YAML document. Its errors carry the parser's line
// numbers, counted from the start of src.
func Parse(src []byte) (*Doc, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(src, &n); err != nil {
		return nil, err
	}
	d := &Doc{src: src, nl: "\n", step: 2, aliased: map[string]bool{}}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		d.root = n.Content[0]
	}
	d.lines = append(d.lines, 0)
	for i, c := range src {
		if c == '\n' {
			d.lines = append(d.lines, i+1)
		}
	}
	if i := bytes.IndexByte(src, '\n'); i > 0 && src[i-1] == '\r' {
		d.nl = "\r\n"
	}
	if d.root != nil {
		d.learnStyle(d.root)
	}
	return d, nil
}

// Root is the document's top node, nil for a document of only comments.
func (d *Doc) Root() *yaml.Node { return d.root }

// Edits are the changes made so far, in text order.
func (d *Doc) Edits() []Edit { return d.edits }

// Lossy reports whether a null or empty value was filled: removing what
// was added then leaves the key absent rather than as it was written.
func (d *Doc) Lossy() bool { return d.lossy }

// learnStyle finds the document's indentation step and sequence style from
// its first nested mapping and first sequence under a key, and the
// anchors its aliases use.
func (d *Doc) learnStyle(root *yaml.Node) {
	stepSeen, seqSeen := false, false
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode {
			d.aliased[n.Value] = true
			return
		}
		if n.Kind == yaml.MappingNode && n.Style&yaml.FlowStyle == 0 {
			for i := 1; i < len(n.Content); i += 2 {
				v := n.Content[i]
				if v.Style&yaml.FlowStyle != 0 || len(v.Content) == 0 {
					continue
				}
				if !stepSeen && v.Kind == yaml.MappingNode && v.Content[0].Column > n.Content[0].Column {
					d.step, stepSeen = v.Content[0].Column-n.Content[0].Column, true
				}
				if !seqSeen && v.Kind == yaml.SequenceNode {
					d.flush, seqSeen = d.column(v) == n.Content[0].Column-1, true
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	if !seqSeen {
		d.flush = true
	}
}

// Reconcile edits the text of node at, whose value decodes to the JSON
// old, so that it decodes to the JSON new. Only the differences between
// old and new are written.
func (d *Doc) Reconcile(at *yaml.Node, old, new []byte) error {
	o, err := jsonNode(old)
	if err != nil {
		return err
	}
	n, err := jsonNode(new)
	if err != nil {
		return err
	}
	mark := len(d.edits)
	if _, err := d.reconcile(at, o, n, at.Style&yaml.FlowStyle != 0, d.indentOf(at), ""); err != nil {
		d.edits = d.edits[:mark]
		return err
	}
	slices.SortStableFunc(d.edits, func(a, b Edit) int { return a.Start - b.Start })
	// Removals of neighbouring lines may share a line break.
	merged := d.edits[:0]
	for _, e := range d.edits {
		if n := len(merged); n > 0 && (e.Start < merged[n-1].End || e.Start == merged[n-1].End && e.Text == "" && merged[n-1].Text == "" && e.End > e.Start) {
			prev := &merged[n-1]
			if e.Text != "" || prev.Text != "" {
				d.edits = d.edits[:mark]
				return d.errorf(at, "overlapping changes at byte %d (a bug: please report it with the manifest)", e.Start)
			}
			prev.End = max(prev.End, e.End)
			continue
		}
		merged = append(merged, e)
	}
	// Lines removed at the end of a text without a final line break take
	// the break before them instead, as insertLines added it.
	if n := len(merged); n > 0 {
		last := &merged[n-1]
		if last.Text == "" && last.End == len(d.src) && d.src[last.End-1] != '\n' && last.Start > 0 && d.src[last.Start-1] == '\n' {
			last.Start--
			if last.Start > 0 && d.src[last.Start-1] == '\r' {
				last.Start--
			}
		}
	}
	d.edits = merged
	return nil
}

// indentOf is the column of the collection holding n, for block scalars.
func (d *Doc) indentOf(n *yaml.Node) int {
	if n == d.root {
		return -1
	}
	return d.column(n) - 1
}

// Apply returns src with the edits (sorted, not overlapping) applied.
func Apply(src []byte, edits []Edit) []byte {
	var out bytes.Buffer
	out.Grow(len(src))
	p := 0
	for _, e := range edits {
		out.Write(src[p:e.Start])
		out.WriteString(e.Text)
		p = e.End
	}
	out.Write(src[p:])
	return out.Bytes()
}

func jsonNode(js []byte) (*yaml.Node, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, fmt.Errorf("decoding a value: %w", err)
	}
	if n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
		return nil, fmt.Errorf("decoding a value: not one JSON value")
	}
	return n.Content[0], nil
}
