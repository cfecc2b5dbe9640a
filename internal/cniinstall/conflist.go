// Package cniinstall puts tandem-cni on a node: the binary in the CNI bin
// directory, an entry at the end of the node's conflist, and a kubeconfig
// with the installer's narrow credentials; it keeps them there while the
// primary CNI rewrites its file, and takes the entry out on uninstall.
package cniinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// PluginType is the "type" of Tandem's entry in a conflist.
const PluginType = "tandem-cni"

// element is one entry of the "plugins" array: its bytes are
// conflist[start:end].
type element struct {
	start, end int
	typ        string
}

// plugins finds the entries of a conflist's top-level "plugins" array and
// the offset of its closing bracket, without decoding anything else: an
// edit then touches only the bytes it must.
func plugins(conflist []byte) (elems []element, closing int, err error) {
	dec := jsontext.NewDecoder(bytes.NewReader(conflist))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, 0, fmt.Errorf("not JSON: %w", err)
	}
	if tok.Kind() != '{' {
		return nil, 0, errors.New("not a JSON object")
	}
	found := false
	for dec.PeekKind() != '}' {
		key, err := dec.ReadToken()
		if err != nil {
			return nil, 0, fmt.Errorf("not JSON: %w", err)
		}
		if key.String() != "plugins" || dec.StackDepth() != 1 {
			if err := dec.SkipValue(); err != nil {
				return nil, 0, fmt.Errorf("not JSON: %w", err)
			}
			continue
		}
		found = true
		if dec.PeekKind() != '[' {
			return nil, 0, errors.New(`"plugins" is not an array`)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, 0, err
		}
		for dec.PeekKind() != ']' {
			v, err := dec.ReadValue()
			if err != nil {
				return nil, 0, fmt.Errorf("not JSON: %w", err)
			}
			end := int(dec.InputOffset())
			var p struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(v, &p); err != nil {
				return nil, 0, fmt.Errorf("plugin %d is not an object: %w", len(elems)+1, err)
			}
			elems = append(elems, element{start: end - len(v), end: end, typ: p.Type})
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, 0, err
		}
		closing = int(dec.InputOffset()) - 1
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return nil, 0, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, 0, errors.New("not JSON: data after the top-level object")
	}
	if !found {
		return nil, 0, errors.New(`no "plugins" array: not a conflist (a single-plugin .conf file cannot be chained; convert it to a .conflist)`)
	}
	return elems, closing, nil
}

// Insert returns conflist with entry as the last plugin, and whether that
// changed anything. An entry of type tandem-cni elsewhere or with other
// content is taken out first; the rest of the file keeps its bytes.
func Insert(conflist, entry []byte) ([]byte, bool, error) {
	elems, _, err := plugins(conflist)
	if err != nil {
		return nil, false, err
	}
	if n := len(elems); n > 0 && elems[n-1].typ == PluginType && bytes.Equal(conflist[elems[n-1].start:elems[n-1].end], entry) &&
		countType(elems, PluginType) == 1 {
		return conflist, false, nil
	}
	out, _, err := Remove(conflist)
	if err != nil {
		return nil, false, err
	}
	if elems, _, err = plugins(out); err != nil {
		return nil, false, err
	}
	if len(elems) == 0 {
		return nil, false, errors.New(`the "plugins" array is empty: there is no primary plugin to chain after`)
	}
	last := elems[len(elems)-1]
	// On a line of its own with the last entry's indentation, if that
	// entry has a line of its own; else right after it.
	sep := []byte(",")
	if nl := bytes.LastIndexByte(out[:last.start], '\n'); nl >= 0 && len(bytes.TrimSpace(out[nl+1:last.start])) == 0 {
		sep = append(sep, out[nl:last.start]...)
	}
	var b bytes.Buffer
	b.Write(out[:last.end])
	b.Write(sep)
	b.Write(entry)
	b.Write(out[last.end:])
	return b.Bytes(), true, nil
}

// Remove takes every tandem-cni entry out of conflist, with the separator
// Insert put before it, so a file Insert changed goes back to its bytes.
func Remove(conflist []byte) ([]byte, bool, error) {
	elems, _, err := plugins(conflist)
	if err != nil {
		return nil, false, err
	}
	out := conflist
	changed := false
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		if e.typ != PluginType {
			continue
		}
		start, end := e.start, e.end
		if i > 0 {
			start = elems[i-1].end // the comma and spacing before it
		} else if i+1 < len(elems) {
			end = elems[i+1].start // first of several: the comma after it
		}
		out = append(bytes.Clone(out[:start]), out[end:]...)
		changed = true
	}
	return out, changed, nil
}

func countType(elems []element, typ string) int {
	n := 0
	for _, e := range elems {
		if e.typ == typ {
			n++
		}
	}
	return n
}

// Entry is Tandem's conflist entry: the plugin and the path of its
// kubeconfig as the container runtime on the node sees it.
func Entry(kubeconfig string) []byte {
	b, _ := json.Marshal(struct {
		Type       string `json:"type"`
		Kubeconfig string `json:"kubeconfig"`
	}{PluginType, kubeconfig})
	return b
}

// IsConfigFile reports whether a file of the CNI configuration directory
// is one a container runtime would load.
func IsConfigFile(name string) bool {
	return strings.HasSuffix(name, ".conflist") || strings.HasSuffix(name, ".conf") || strings.HasSuffix(name, ".json")
}
