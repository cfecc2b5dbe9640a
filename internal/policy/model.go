package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/templates"
	"github.com/tandem-mesh/tandem/webhook"
)

func mustIndent(v any) string {
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

// A variant is one template in one layout, rendered with a unique marker
// (sentinel) in place of every setting. The rendered sidecars, as JSON,
// become a tree whose strings are made of literal text and settings, and
// whose list items and object fields may depend on optional settings being
// non-empty. The tree is learnt from renderings without each optional
// setting, then checked against renderings with real values, so a template
// whose structure the tree cannot express is refused, not mistranslated.

type variant struct {
	template string
	native   bool
	capture  string
	// podSecurity: per level of Pod Security the namespace may enforce,
	// the injector's refusal of these sidecars with markers for the pod
	// and the namespace ("" when allowed).
	podSecurity map[string]string
	// The sidecars' parts, in templates.Sidecars order.
	initFirst, initLast, containersFirst, volumes, appEnv, appMounts []*node
}

type nodeKind int

const (
	nodeObject nodeKind = iota // a Go struct: a typed CEL object
	nodeMap                    // a Go map: a CEL map literal
	nodeList
	nodeString
	nodeLiteral // number or bool
)

type node struct {
	kind   nodeKind
	typ    reflect.Type
	keys   []string // object and map keys, sorted
	fields map[string]*node
	items  []*node
	parts  []part // string
	lit    json.RawMessage

	// Presence: when cond is set, only if all those settings are non-empty;
	// when anyChild, only if one of its children is present.
	cond     []int
	anyChild bool
}

// part of a string: literal text, or setting (an index into settings) when text is empty.
type part struct {
	text    string
	setting int
}

// Markers of the pod's and the namespace's names in a refusal.
const (
	podMarker = "\x00pod\x00"
	nsMarker  = "\x00namespace\x00"
)

// sentinel is setting i's marker. The sidecars hold quantities as
// resource.Quantity, so a quantity's marker is an unlikely canonical one.
func sentinel(i int) string {
	if k := settings[i].kind; k == kindCPU || k == kindMemory {
		return fmt.Sprintf("9%06d7m", i)
	}
	return fmt.Sprintf("zzsentinel%dzz", i)
}

// testValue is a plausible value of setting i, distinct from the others.
func testValue(i int) string {
	if k := settings[i].kind; k == kindCPU || k == kindMemory {
		return fmt.Sprintf("%dm", 101+i)
	}
	return fmt.Sprintf("value-%d", i)
}

// renderJSON renders a variant with values and decodes the sidecars' parts as generic JSON.
func renderJSON(set *templates.Set, name string, v templates.Values) (map[string]any, error) {
	r, err := set.Render(name, v)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(&r.Sidecars)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]any
	return out, dec.Decode(&out)
}

// withValues returns base with every setting i set to value(i).
func withValues(base templates.Values, value func(i int) string) templates.Values {
	v := base
	for i, s := range settings {
		*s.field(&v) = value(i)
	}
	return v
}

// sidecarParts are the fields of templates.Sidecars with the Go type of their items.
var sidecarParts = []struct {
	key string
	typ reflect.Type
}{
	{"initContainersFirst", reflect.TypeFor[corev1.Container]()},
	{"initContainersLast", reflect.TypeFor[corev1.Container]()},
	{"containersFirst", reflect.TypeFor[corev1.Container]()},
	{"volumes", reflect.TypeFor[corev1.Volume]()},
	{"appEnv", reflect.TypeFor[corev1.EnvVar]()},
	{"appVolumeMounts", reflect.TypeFor[corev1.VolumeMount]()},
}

// learn builds the variant's tree. base carries the values that are the
// same for every pod (bootstraps).
func learn(set *templates.Set, name string, native bool, capture string, base templates.Values) (*variant, error) {
	base.NativeSidecar, base.Capture = native, capture
	full, err := renderJSON(set, name, withValues(base, sentinel))
	if err != nil {
		return nil, err
	}
	vr := &variant{template: name, native: native, capture: capture, podSecurity: map[string]string{}}
	// The refusal is compiled per variant: it must not depend on settings.
	for _, value := range []func(int) string{testValue, func(i int) string {
		if settings[i].optional {
			return ""
		}
		return testValue(i)
	}} {
		r, err := set.Render(name, withValues(base, value))
		if err != nil {
			return nil, err
		}
		for _, level := range webhook.PodSecurityLevels {
			msg := webhook.PodSecurityRefusal(podMarker, nsMarker, level, &r.Sidecars)
			if had, ok := vr.podSecurity[level]; ok && had != msg {
				return nil, fmt.Errorf("template %q (native sidecar %t, capture %s): whether Pod Security %q allows the sidecars depends on settings, which the policy cannot express", name, native, capture, level)
			}
			vr.podSecurity[level] = msg
		}
	}
	dst := []*[]*node{&vr.initFirst, &vr.initLast, &vr.containersFirst, &vr.volumes, &vr.appEnv, &vr.appMounts}
	roots := make([]*node, len(sidecarParts))
	for i, p := range sidecarParts {
		items, _ := full[p.key].([]any)
		roots[i], err = build(items, reflect.SliceOf(p.typ), p.key)
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", name, err)
		}
		*dst[i] = roots[i].items
	}
	// Which nodes disappear without each optional setting, and without all of them.
	var optional []int
	for i, s := range settings {
		if s.optional {
			optional = append(optional, i)
		}
	}
	absent := map[*node][]int{}
	absentAll := map[*node]bool{}
	for _, k := range append(slices.Clone(optional), -1) {
		empty := []int{k}
		if k < 0 {
			empty = optional
		}
		red, err := renderJSON(set, name, withValues(base, func(i int) string {
			if slices.Contains(empty, i) {
				return ""
			}
			return sentinel(i)
		}))
		if err != nil {
			return nil, err
		}
		for i, p := range sidecarParts {
			items, _ := red[p.key].([]any)
			var missing []*node
			if !align(roots[i], items, empty, &missing) {
				return nil, fmt.Errorf("template %q (native sidecar %t, capture %s): %s: the structure changes without %s in a way the policy cannot express", name, native, capture, p.key, describe(empty))
			}
			for _, n := range missing {
				if k < 0 {
					absentAll[n] = true
				} else {
					absent[n] = append(absent[n], k)
				}
			}
		}
	}
	for i, r := range roots {
		if err := presence(r, absent, absentAll, true); err != nil {
			return nil, fmt.Errorf("template %q (native sidecar %t, capture %s): %s: %w", name, native, capture, sidecarParts[i].key, err)
		}
		for _, it := range r.items {
			if it.cond != nil || it.anyChild {
				return nil, fmt.Errorf("template %q (native sidecar %t, capture %s): an item of %s depends on a setting; the policy adds whole containers, volumes and app settings only unconditionally", name, native, capture, sidecarParts[i].key)
			}
		}
	}
	if err := vr.check(set, base, optional); err != nil {
		return nil, err
	}
	return vr, nil
}

func describe(empty []int) string {
	var keys []string
	for _, i := range empty {
		keys = append(keys, settings[i].key)
	}
	return strings.Join(keys, ", ")
}

// build turns decoded JSON of Go type t into a node.
func build(v any, t reflect.Type, where string) (*node, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n := &node{typ: t}
	switch v := v.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Struct:
			n.kind = nodeObject
		case reflect.Map:
			n.kind = nodeMap
		default:
			return nil, fmt.Errorf("%s: an object where Go has %s", where, t)
		}
		n.fields = map[string]*node{}
		for k, fv := range v {
			ft, err := fieldType(t, k)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if n.fields[k], err = build(fv, ft, where+"."+k); err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k)
		}
		slices.Sort(n.keys)
	case []any:
		n.kind = nodeList
		if t.Kind() != reflect.Slice {
			return nil, fmt.Errorf("%s: a list where Go has %s", where, t)
		}
		for i, item := range v {
			c, err := build(item, t.Elem(), fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, c)
		}
	case string:
		n.kind = nodeString
		n.parts = splitSentinels(v)
	default:
		n.kind = nodeLiteral
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		n.lit = raw
	}
	return n, nil
}

// fieldType is the Go type of the JSON field key of t (a struct or map).
func fieldType(t reflect.Type, key string) (reflect.Type, error) {
	if t.Kind() == reflect.Map {
		return t.Elem(), nil
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" && f.Anonymous { // embedded: its fields are the struct's, as encoding/json writes them
			if ft, err := fieldType(f.Type, key); err == nil {
				return ft, nil
			}
			continue
		}
		if name == key {
			return f.Type, nil
		}
	}
	return nil, fmt.Errorf("%s has no field %q", t, key)
}

// splitSentinels cuts a string into literal text and settings.
func splitSentinels(s string) []part {
	var parts []part
	for s != "" {
		at, which := -1, -1
		for i := range settings {
			if j := strings.Index(s, sentinel(i)); j >= 0 && (at < 0 || j < at) {
				at, which = j, i
			}
		}
		if at < 0 {
			parts = append(parts, part{text: s, setting: -1})
			break
		}
		if at > 0 {
			parts = append(parts, part{text: s[:at], setting: -1})
		}
		parts = append(parts, part{setting: which})
		s = s[at+len(sentinel(which)):]
	}
	return parts
}

// substitute writes a string node with the settings' values.
func substitute(parts []part, value func(i int) string) string {
	var b strings.Builder
	for _, p := range parts {
		if p.setting < 0 {
			b.WriteString(p.text)
		} else {
			b.WriteString(value(p.setting))
		}
	}
	return b.String()
}

// align matches the rendering red (made with the settings in empty left
// empty) against n, collecting the nodes of n it lacks. List items are
// matched in order, each rendered item to the next compatible one of n.
func align(n *node, red any, empty []int, missing *[]*node) bool {
	value := func(i int) string {
		if slices.Contains(empty, i) {
			return ""
		}
		return sentinel(i)
	}
	switch n.kind {
	case nodeObject, nodeMap:
		m, ok := red.(map[string]any)
		if !ok {
			return false
		}
		for k := range m {
			if _, ok := n.fields[k]; !ok {
				return false
			}
		}
		for _, k := range n.keys {
			rv, ok := m[k]
			if !ok {
				collect(n.fields[k], missing)
				continue
			}
			if !align(n.fields[k], rv, empty, missing) {
				return false
			}
		}
		return true
	case nodeList:
		l, ok := red.([]any)
		if !ok {
			return false
		}
		j := 0
		for _, it := range n.items {
			var sub []*node
			if j < len(l) && align(it, l[j], empty, &sub) {
				*missing = append(*missing, sub...)
				j++
				continue
			}
			collect(it, missing)
		}
		return j == len(l)
	case nodeString:
		s, ok := red.(string)
		return ok && s == substitute(n.parts, value)
	default:
		raw, err := json.Marshal(red)
		return err == nil && bytes.Equal(raw, n.lit)
	}
}

// collect records n as missing (its descendants go with it).
func collect(n *node, missing *[]*node) { *missing = append(*missing, n) }

// presence sets the conditions of n's descendants from what each rendering lacked.
func presence(n *node, absent map[*node][]int, absentAll map[*node]bool, root bool) error {
	if !root {
		switch {
		case len(absent[n]) > 0:
			n.cond = absent[n]
		case absentAll[n]:
			n.anyChild = true
		}
	}
	children := n.items
	for _, k := range n.keys {
		children = append(children, n.fields[k])
	}
	for _, c := range children {
		if err := presence(c, absent, absentAll, false); err != nil {
			return err
		}
	}
	if n.anyChild {
		for _, c := range children {
			if c.cond == nil && !c.anyChild {
				return fmt.Errorf("a part disappears when every optional setting is empty, but not with any one of them")
			}
		}
	}
	return nil
}

// present evaluates a node's condition for values.
func (n *node) present(value func(i int) string) bool {
	for _, k := range n.cond {
		if value(k) == "" {
			return false
		}
	}
	if n.anyChild {
		for _, c := range n.children() {
			if c.present(value) {
				return true
			}
		}
		return false
	}
	return true
}

func (n *node) children() []*node {
	out := slices.Clone(n.items)
	for _, k := range n.keys {
		out = append(out, n.fields[k])
	}
	return out
}

// eval is the JSON the tree stands for, with values.
func (n *node) eval(value func(i int) string) any {
	switch n.kind {
	case nodeObject, nodeMap:
		m := map[string]any{}
		for _, k := range n.keys {
			if c := n.fields[k]; c.present(value) {
				m[k] = c.eval(value)
			}
		}
		return m
	case nodeList:
		l := []any{}
		for _, it := range n.items {
			if it.present(value) {
				l = append(l, it.eval(value))
			}
		}
		return l
	case nodeString:
		return substitute(n.parts, value)
	default:
		return json.RawMessage(n.lit)
	}
}

// check renders the variant with real-looking values, each optional
// setting and each pair of them left empty, and compares with the tree.
func (vr *variant) check(set *templates.Set, base templates.Values, optional []int) error {
	var cases [][]int
	cases = append(cases, nil, optional)
	for a := range optional {
		cases = append(cases, []int{optional[a]})
		for b := a + 1; b < len(optional); b++ {
			cases = append(cases, []int{optional[a], optional[b]})
		}
	}
	base.NativeSidecar, base.Capture = vr.native, vr.capture
	var values []func(int) string
	for _, empty := range cases {
		values = append(values, func(i int) string {
			if slices.Contains(empty, i) {
				return ""
			}
			return testValue(i)
		})
	}
	// A template may branch on a value rather than on its presence: try the
	// defaults, and every value of the settings that have few.
	values = append(values, func(i int) string { return *settings[i].field(&base) })
	for i, s := range settings {
		if s.kind == kindLogLevel {
			for _, level := range logLevels {
				values = append(values, func(j int) string {
					if j == i {
						return level
					}
					return testValue(j)
				})
			}
		}
	}
	for _, value := range values {
		got, err := renderJSON(set, vr.template, withValues(base, value))
		if err != nil {
			return err
		}
		for i, p := range sidecarParts {
			want := (&node{kind: nodeList, items: vr.part(i)}).eval(value)
			have, _ := got[p.key].([]any)
			if have == nil {
				have = []any{}
			}
			if !reflect.DeepEqual(normalize(want), normalize(have)) {
				return fmt.Errorf("template %q (native sidecar %t, capture %s): %s renders differently from what the policy would write with %s:\n%s",
					vr.template, vr.native, vr.capture, p.key, describeValues(value), textdiff.Lines(mustIndent(want), mustIndent(have)))
			}
		}
	}
	return nil
}

func describeValues(value func(int) string) string {
	var kv []string
	for i, s := range settings {
		kv = append(kv, fmt.Sprintf("%s=%q", s.key, value(i)))
	}
	return strings.Join(kv, " ")
}

func (vr *variant) part(i int) []*node {
	return [][]*node{vr.initFirst, vr.initLast, vr.containersFirst, vr.volumes, vr.appEnv, vr.appMounts}[i]
}

// normalize makes decoded JSON comparable: numbers as text.
func normalize(v any) any {
	raw, _ := json.Marshal(v)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	_ = dec.Decode(&out)
	return out
}
