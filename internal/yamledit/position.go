package yamledit

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// The YAML parser gives each node's first line and column (in characters)
// but not where the node ends; the functions here find both as byte
// offsets into the document's text.

// offset is the byte offset of a node's first character (its anchor or
// tag when it has one).
func (d *Doc) offset(n *yaml.Node) int {
	if n.Line < 1 || n.Line > len(d.lines) {
		return len(d.src)
	}
	p := d.lines[n.Line-1]
	for col := 1; col < n.Column && p < len(d.src) && d.src[p] != '\n'; col++ {
		_, size := utf8.DecodeRune(d.src[p:])
		p += size
	}
	return p
}

// body is the offset of a node's value, after its anchor and tag.
func (d *Doc) body(n *yaml.Node) int {
	p := d.offset(n)
	for p < len(d.src) && (d.src[p] == '&' || d.src[p] == '!') {
		for p < len(d.src) && !isSpace(d.src[p]) {
			p++
		}
		for p < len(d.src) && isSpace(d.src[p]) {
			p++
		}
	}
	return p
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// end is the offset just after a node's last character. indent is the
// column of the block collection holding the node (-1 at the top), which
// ends a block scalar.
func (d *Doc) end(n *yaml.Node, indent int) (int, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return d.offset(n) + 1 + len(n.Value), nil
	case yaml.ScalarNode:
		return d.scalarEnd(n, indent)
	case yaml.MappingNode, yaml.SequenceNode:
		if n.Style&yaml.FlowStyle != 0 {
			return d.closing(d.body(n))
		}
		if len(n.Content) == 0 {
			return d.body(n), nil
		}
		return d.end(n.Content[len(n.Content)-1], d.column(n))
	}
	return 0, d.errorf(n, "unexpected YAML node kind %v", n.Kind)
}

// column is the column (from 0) of a block collection: of its keys, or of
// its dashes.
func (d *Doc) column(n *yaml.Node) int {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
		if p, ok := d.dash(n.Content[0]); ok {
			return p - lineStart(d.src, p)
		}
	}
	if len(n.Content) > 0 {
		return n.Content[0].Column - 1
	}
	return n.Column - 1
}

// dash finds the "-" introducing a block sequence item.
func (d *Doc) dash(item *yaml.Node) (int, bool) {
	p := d.offset(item) - 1
	for p >= 0 && isSpace(d.src[p]) {
		p--
	}
	return p, p >= 0 && d.src[p] == '-'
}

func (d *Doc) scalarEnd(n *yaml.Node, indent int) (int, error) {
	p := d.body(n)
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		for q := p + 1; q < len(d.src); q++ {
			switch d.src[q] {
			case '\\':
				q++
			case '"':
				return q + 1, nil
			}
		}
	case n.Style&yaml.SingleQuotedStyle != 0:
		for q := p + 1; q < len(d.src); q++ {
			if d.src[q] == '\'' {
				if q+1 < len(d.src) && d.src[q+1] == '\'' {
					q++
					continue
				}
				return q + 1, nil
			}
		}
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return d.blockScalarEnd(p, indent), nil
	default:
		// A plain scalar has no escapes: its words are in the text as they
		// are in the value, separated by spaces and line breaks.
		q := p
		for _, w := range strings.Fields(n.Value) {
			for q < len(d.src) && isSpace(d.src[q]) {
				q++
			}
			if !bytes.HasPrefix(d.src[q:], []byte(w)) {
				return 0, d.errorf(n, "cannot find the end of the value %q", n.Value)
			}
			q += len(w)
		}
		return q, nil
	}
	return 0, d.errorf(n, "unterminated quoted value")
}

// blockScalarEnd: a literal or folded scalar runs while its lines are blank
// or indented deeper than the collection holding it. The end is that of
// its last non-blank line, or of its last blank one when it keeps them (+).
func (d *Doc) blockScalarEnd(p, indent int) int {
	keep := false
	q := p + 1
	for q < len(d.src) && d.src[q] != '\n' {
		if d.src[q] == '+' {
			keep = true
		}
		if d.src[q] == '#' || d.src[q] == ' ' {
			break
		}
		q++
	}
	end := lineEnd(d.src, q)
	for ls := nextLine(d.src, q); ls < len(d.src); {
		le := lineEnd(d.src, ls)
		line := d.src[ls:le]
		spaces := len(line) - len(bytes.TrimLeft(line, " "))
		blank := len(bytes.TrimSpace(line)) == 0
		if !blank && spaces <= indent {
			break
		}
		if !blank || keep {
			end = le
		}
		ls = nextLine(d.src, ls)
	}
	return end
}

// closing finds the bracket that closes the flow collection opened at p,
// and returns the offset after it.
func (d *Doc) closing(p int) (int, error) {
	depth := 0
	for q := p; q < len(d.src); q++ {
		c := d.src[q]
		prev := byte(' ')
		if q > 0 {
			prev = d.src[q-1]
		}
		switch {
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
			if depth == 0 {
				return q + 1, nil
			}
		case c == '#' && isSpace(prev):
			q = lineEnd(d.src, q)
		case (c == '"' || c == '\'') && strings.IndexByte("[{,: \t\r\n", prev) >= 0:
			for q++; q < len(d.src); q++ {
				if c == '"' && d.src[q] == '\\' {
					q++
				} else if d.src[q] == c {
					if c == '\'' && q+1 < len(d.src) && d.src[q+1] == '\'' {
						q++
						continue
					}
					break
				}
			}
		}
	}
	return 0, fmt.Errorf("line %d: unclosed flow collection", d.lineOf(p))
}

// lineStart is the offset of the start of the line holding p.
func lineStart(src []byte, p int) int {
	return bytes.LastIndexByte(src[:p], '\n') + 1
}

// lineEnd is the offset of the line break ending the line holding p (or
// the end of the text); a CR before it is part of the break.
func lineEnd(src []byte, p int) int {
	i := bytes.IndexByte(src[p:], '\n')
	if i < 0 {
		return len(src)
	}
	if e := p + i; e > 0 && src[e-1] == '\r' {
		return e - 1
	}
	return p + i
}

// nextLine is the offset of the line after the one holding p.
func nextLine(src []byte, p int) int {
	i := bytes.IndexByte(src[p:], '\n')
	if i < 0 {
		return len(src)
	}
	return p + i + 1
}

// onlySpaceBefore reports whether p is the first non-blank of its line.
func onlySpaceBefore(src []byte, p int) bool {
	return len(bytes.TrimLeft(src[lineStart(src, p):p], " \t")) == 0
}

func (d *Doc) lineOf(p int) int {
	return bytes.Count(d.src[:p], []byte("\n")) + 1
}
