package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Value is one documented key of a chart's values.
type Value struct {
	Key, Type, Default, Description string
}

// schema is the part of JSON Schema the documentation reads.
type schema struct {
	Ref         string             `json:"$ref"`
	Type        any                `json:"type"`
	Enum        []any              `json:"enum"`
	Description string             `json:"description"`
	Properties  map[string]*schema `json:"properties"`
	Defs        map[string]*schema `json:"$defs"`
}

// Values lists the keys of the chart in dir as its schema describes them,
// with their defaults from values.yaml: every property of an object the
// schema spells out, down to the leaves (a $ref is a leaf, typed by the
// definition it names).
func Values(dir string) ([]Value, error) {
	sb, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	if err != nil {
		return nil, err
	}
	var s schema
	if err := json.Unmarshal(sb, &s); err != nil {
		return nil, fmt.Errorf("%s/values.schema.json: %w", dir, err)
	}
	vb, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(vb, &defaults); err != nil {
		return nil, fmt.Errorf("%s/values.yaml: %w", dir, err)
	}
	root := &s
	var out []Value
	var walk func(prefix string, s *schema, def any) error
	walk = func(prefix string, s *schema, def any) error {
		if len(s.Properties) > 0 && s.Ref == "" {
			keys := make([]string, 0, len(s.Properties))
			for k := range s.Properties {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			m, _ := def.(map[string]any)
			for _, k := range keys {
				if err := walk(prefix+k+".", s.Properties[k], m[k]); err != nil {
					return err
				}
			}
			return nil
		}
		key := strings.TrimSuffix(prefix, ".")
		if s.Description == "" {
			return fmt.Errorf("value %s has no description in the schema", key)
		}
		typ := typeOf(s)
		if d := root.Defs[strings.TrimPrefix(s.Ref, "#/$defs/")]; s.Ref != "" && d != nil && len(d.Enum) > 0 {
			typ = typeOf(d) // an enum reads better than its definition's name
		}
		out = append(out, Value{Key: key, Type: typ, Default: defaultText(def), Description: s.Description})
		return nil
	}
	if err := walk("", &s, defaults); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return out, nil
}

func typeOf(s *schema) string {
	if s.Ref != "" {
		return strings.TrimPrefix(s.Ref, "#/$defs/")
	}
	if len(s.Enum) > 0 {
		var vs []string
		for _, e := range s.Enum {
			b, _ := json.Marshal(e)
			vs = append(vs, string(b))
		}
		return strings.Join(vs, " \\| ")
	}
	switch t := s.Type.(type) {
	case string:
		return t
	case []any:
		var vs []string
		for _, e := range t {
			vs = append(vs, fmt.Sprint(e))
		}
		return strings.Join(vs, " or ")
	}
	return "any"
}

func defaultText(v any) string {
	if v == nil {
		return "`null`"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return "`" + strings.ReplaceAll(string(b), "|", "\\|") + "`"
}

var tableMarker = regexp.MustCompile(`(?s)<!-- values of (\S+) -->\n.*?<!-- end of values -->\n`)

// valueTables replaces the table between "<!-- values of CHART -->" and
// "<!-- end of values -->" in docs with the chart's values.
func valueTables(root string, docs []byte) ([]byte, error) {
	seen := map[string]bool{}
	var ferr error
	out := tableMarker.ReplaceAllFunc(docs, func(m []byte) []byte {
		name := string(tableMarker.FindSubmatch(m)[1])
		seen[name] = true
		vs, err := Values(filepath.Join(root, "charts", name))
		if err != nil {
			ferr = err
			return m
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "<!-- values of %s -->\n", name)
		b.WriteString("| key | type | default | what it does |\n|---|---|---|---|\n")
		for _, v := range vs {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", v.Key, v.Type, v.Default, strings.ReplaceAll(v.Description, "|", "\\|"))
		}
		b.WriteString("<!-- end of values -->\n")
		return b.Bytes()
	})
	if ferr != nil {
		return nil, ferr
	}
	for _, name := range Names {
		if !seen[name] {
			return nil, fmt.Errorf("no table of the values of %s (<!-- values of %s --> ... <!-- end of values -->)", name, name)
		}
	}
	return out, nil
}
