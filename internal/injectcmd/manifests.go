package injectcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/yamledit"
)

// podAction changes a decoded pod (of a Pod or a pod template) in place,
// and says what to tell the user about it ("" for nothing). The text is
// edited wherever the pod changed.
type podAction func(pod *corev1.Pod, namespace string) (note string, err error)

// editFile runs act over the manifests of file (standard input for "-")
// and writes the result, for the command cmd ("injector inject"); it
// returns the exit code.
func editFile(cmd, file string, stdin io.Reader, stdout, stderr io.Writer, act podAction) int {
	var data []byte
	var err error
	name := file
	if file == "-" {
		name = "<stdin>"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	var res edited
	if err == nil {
		res, err = editManifests(name, data, stderr, act)
	}
	if err == nil {
		_, err = stdout.Write(res.out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// edited is the outcome of editManifests.
type edited struct {
	out []byte
	// edits are what was changed, as offsets into the input.
	edits []yamledit.Edit
	// lossy: a null or empty list or mapping was filled (see yamledit).
	lossy bool
}

// editManifests applies act to every pod and pod template of the
// manifests in data and returns the text with only the changes act made:
// everything else comes out byte for byte. notes receives one line for
// every document or pod left unchanged. file names the input in messages.
func editManifests(file string, data []byte, notes io.Writer, act podAction) (edited, error) {
	docs, err := splitDocuments(file, data)
	if err != nil {
		return edited{}, err
	}
	var res edited
	// Objects without a pod (ConfigMaps, Services, ...) are counted by kind
	// and named in one line: a kustomize build has hundreds.
	podless := map[string]int{}
	for i, dr := range docs {
		w := &walker{file: file, base: dr.line, doc: i + 1, notes: notes, act: act, podless: podless}
		text := data[dr.start:dr.end]
		d, err := w.document(text)
		if err != nil {
			return edited{}, err
		}
		if d == nil {
			continue
		}
		for _, e := range d.Edits() {
			res.edits = append(res.edits, yamledit.Edit{Start: e.Start + dr.start, End: e.End + dr.start, Text: e.Text})
		}
		res.lossy = res.lossy || d.Lossy()
	}
	if len(podless) > 0 {
		total, kinds := 0, make([]string, 0, len(podless))
		for k, n := range podless {
			total += n
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(notes, "%s: nothing to inject in %d %s without a pod template: %s\n", file, total, plural(total, "object", "objects"), strings.Join(kinds, ", "))
	}
	res.out = yamledit.Apply(data, res.edits)
	return res, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// docRange is one document of the input: its bytes and its first line.
type docRange struct{ start, end, line int }

var marker = regexp.MustCompile(`(?m)^(---|\.\.\.)([ \t\r]|#|$)`)

// splitDocuments cuts a YAML stream at its "---" lines (which start the
// next document) and "..." lines (which end the current one), or a JSON
// stream into its values.
func splitDocuments(file string, data []byte) ([]docRange, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var docs []docRange
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if err == io.EOF {
				return docs, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: %w", file, lineAt(data, int(dec.InputOffset())), err)
			}
			end := int(dec.InputOffset())
			start := end - len(raw)
			docs = append(docs, docRange{start: start, end: end, line: lineAt(data, start)})
		}
	}
	var docs []docRange
	start := 0
	for _, m := range marker.FindAllSubmatchIndex(data, -1) {
		cut := m[0]
		if string(data[m[2]:m[3]]) == "..." {
			cut = nextLine(data, m[0])
		}
		if cut > start {
			docs = append(docs, docRange{start: start, end: cut, line: lineAt(data, start)})
		}
		start = cut
	}
	if start < len(data) {
		docs = append(docs, docRange{start: start, end: len(data), line: lineAt(data, start)})
	}
	return docs, nil
}

func lineAt(data []byte, p int) int { return bytes.Count(data[:min(p, len(data))], []byte("\n")) + 1 }

func nextLine(data []byte, p int) int {
	if i := bytes.IndexByte(data[p:], '\n'); i >= 0 {
		return p + i + 1
	}
	return len(data)
}

// walker goes through one document.
type walker struct {
	file  string
	base  int // the file's line of the document's first line
	doc   int
	notes io.Writer
	// podless counts the objects without a pod template, by kind.
	podless map[string]int
	act     podAction
	d       *yamledit.Doc
}

var lineRef = regexp.MustCompile(`line (\d+)`)

// fileErr names the file and turns the document's line numbers in err into
// the file's.
func (w *walker) fileErr(err error) error {
	return fmt.Errorf("%s: %s", w.file, w.shift(err))
}

// shift turns the document's line numbers in err into the file's.
func (w *walker) shift(err error) string {
	return lineRef.ReplaceAllStringFunc(err.Error(), func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return "line " + strconv.Itoa(n+w.base-1)
	})
}

// line is the file's line of node n (of its first key, for a mapping:
// the parser places a mapping at its comments).
func (w *walker) line(n *yaml.Node) int {
	if n.Kind == yaml.MappingNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return n.Line + w.base - 1
}

// document handles one document; nil when it holds nothing but comments.
func (w *walker) document(text []byte) (*yamledit.Doc, error) {
	d, err := yamledit.Parse(text)
	if err != nil {
		return nil, w.fileErr(err)
	}
	w.d = d
	if r := d.Root(); r == nil || r.Kind == yaml.ScalarNode && r.Tag == "!!null" {
		if len(bytes.Trim(text, "-. \t\r\n")) > 0 {
			fmt.Fprintf(w.notes, "%s:%d: document %d: only comments\n", w.file, w.base, w.doc)
		}
		return nil, nil
	}
	js, err := sigsyaml.YAMLToJSON(text)
	if err != nil {
		return nil, w.fileErr(err)
	}
	var obj any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return nil, w.fileErr(err)
	}
	m, ok := obj.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s:%d: document %d is not a Kubernetes object (a mapping with apiVersion and kind)", w.file, w.line(d.Root()), w.doc)
	}
	return d, w.object(d.Root(), m, fmt.Sprintf("document %d", w.doc))
}

// podTemplates says where each workload injection knows keeps its pod
// template (nil: the object is the pod).
var podTemplates = map[string][]string{
	"v1 Pod":                                {},
	"v1 PodTemplate":                        {"template"},
	"v1 ReplicationController":              {"spec", "template"},
	"apps/v1 Deployment":                    {"spec", "template"},
	"apps/v1 StatefulSet":                   {"spec", "template"},
	"apps/v1 DaemonSet":                     {"spec", "template"},
	"apps/v1 ReplicaSet":                    {"spec", "template"},
	"batch/v1 Job":                          {"spec", "template"},
	"batch/v1 CronJob":                      {"spec", "jobTemplate", "spec", "template"},
	"apps.openshift.io/v1 DeploymentConfig": {"spec", "template"},
	"argoproj.io/v1alpha1 Rollout":          {"spec", "template"},
}

// removedVersions are API versions of workloads Kubernetes no longer serves.
var removedVersions = map[string]string{
	"extensions/v1beta1":  "removed in Kubernetes 1.16; use apps/v1",
	"apps/v1beta1":        "removed in Kubernetes 1.16; use apps/v1",
	"apps/v1beta2":        "removed in Kubernetes 1.16; use apps/v1",
	"batch/v1beta1":       "removed in Kubernetes 1.25; use batch/v1",
	"batch/v2alpha1":      "removed in Kubernetes 1.21; use batch/v1",
	"v1 DeploymentConfig": "the OpenShift 3 form of DeploymentConfig; use apps.openshift.io/v1",
}

// object handles a decoded object m whose text is node n.
func (w *walker) object(n *yaml.Node, m map[string]any, label string) error {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)
	what := "an object without kind"
	if kind != "" {
		what = fmt.Sprintf("%s (%s)", strings.TrimSpace(kind+" "+qualified(namespace, name)), apiVersion)
	}
	where := fmt.Sprintf("%s:%d: %s, %s", w.file, w.line(n), label, what)
	note := func(format string, args ...any) {
		fmt.Fprintf(w.notes, "%s: %s\n", where, fmt.Sprintf(format, args...))
	}

	if apiVersion == "v1" && strings.HasSuffix(kind, "List") {
		items, _ := m["items"].([]any)
		list := child(n, "items")
		if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) != len(items) {
			return fmt.Errorf("%s: items is not a list", where)
		}
		for i, item := range items {
			label := fmt.Sprintf("%s, %s item %d", label, kind, i+1)
			switch it := item.(type) {
			case nil:
				fmt.Fprintf(w.notes, "%s:%d: %s: null, written as it is (kubectl ignores it)\n", w.file, w.line(list.Content[i]), label)
			case map[string]any:
				if err := w.object(list.Content[i], it, label); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s:%d: %s: not an object", w.file, w.line(list.Content[i]), label)
			}
		}
		return nil
	}

	path, known := podTemplates[apiVersion+" "+kind]
	if !known {
		p := findTemplate(m)
		switch {
		case p == nil:
			w.podless[kind]++
		case removedVersions[apiVersion] != "" || removedVersions[apiVersion+" "+kind] != "":
			note("not injected: apiVersion %s of %s is not served by Kubernetes (%s%s); its pod template is written unchanged",
				apiVersion, kind, removedVersions[apiVersion], removedVersions[apiVersion+" "+kind])
		default:
			note("not injected: %s of %s is not a workload the injector knows (%s); its pod template at %s is written unchanged",
				kind, apiVersion, knownWorkloads(), strings.Join(p, "."))
		}
		return nil
	}
	tmpl, text := m, n
	for _, key := range path {
		next, _ := tmpl[key].(map[string]any)
		t := child(text, key)
		if next == nil || t == nil {
			note("nothing to inject: no pod template at %s", strings.Join(path, "."))
			return nil
		}
		if t.Kind == yaml.AliasNode {
			return fmt.Errorf("%s: line %d: %s is the YAML alias *%s; write it out in full so that injection changes only this object", where, w.line(t), strings.Join(path, "."), t.Value)
		}
		tmpl, text = next, t
	}
	if text.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: the pod template is not a mapping", where)
	}
	return w.pod(text, tmpl, namespace, where, note)
}

// pod decodes the pod (or pod template) tmpl, lets the action change it
// and edits its text node n accordingly.
func (w *walker) pod(n *yaml.Node, tmpl map[string]any, namespace, where string, note func(string, ...any)) error {
	js, err := json.Marshal(map[string]any{"metadata": tmpl["metadata"], "spec": tmpl["spec"]})
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	pod := &corev1.Pod{}
	strict, err := sigsjson.UnmarshalStrict(js, pod)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return fmt.Errorf("%s: the pod does not decode: %w", where, err)
	}
	old, err := podJSON(pod)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	msg, err := w.act(pod, namespace)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if msg != "" {
		note("%s", msg)
	}
	new, err := podJSON(pod)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if bytes.Equal(old, new) {
		return nil
	}
	if err := w.d.Reconcile(n, old, new); err != nil {
		return fmt.Errorf("%s: %s", where, w.shift(err))
	}
	return nil
}

// podJSON is the JSON of a pod's metadata and spec, as a template holds them.
func podJSON(pod *corev1.Pod) ([]byte, error) {
	return json.Marshal(struct {
		Metadata any `json:"metadata"`
		Spec     any `json:"spec"`
	}{&pod.ObjectMeta, &pod.Spec})
}

// child is the value of key in the mapping n.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// findTemplate looks for a pod template where workloads keep one.
func findTemplate(m map[string]any) []string {
	for _, p := range [][]string{{"spec", "template"}, {"spec", "jobTemplate", "spec", "template"}, {"template"}, {}} {
		cur := m
		for _, k := range p {
			cur, _ = cur[k].(map[string]any)
		}
		spec, _ := cur["spec"].(map[string]any)
		if _, ok := spec["containers"]; ok {
			if len(p) == 0 {
				return []string{"spec"}
			}
			return p
		}
	}
	return nil
}

func knownWorkloads() string {
	var ks []string
	for k := range podTemplates {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return "it injects " + strings.Join(ks, ", ")
}

func qualified(namespace, name string) string {
	if name != "" && namespace != "" {
		return namespace + "/" + name
	}
	return name
}
