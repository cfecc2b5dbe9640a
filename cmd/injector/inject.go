package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: injector inject -f FILE|- [flags]\n\n"+
			"Writes the manifests of FILE (YAML or JSON, several documents, List objects) to\n"+
			"standard output as YAML, with Tandem's sidecars added to every Pod and to the pod\n"+
			"template of every Deployment, StatefulSet, DaemonSet, ReplicaSet,\n"+
			"ReplicationController, Job and CronJob, as the webhook would in a namespace\n"+
			"labeled %s=%s. Other objects are written unchanged; manifests injected\n"+
			"before are injected again with the current settings.\n\nFlags:\n", wellknown.InjectLabel, wellknown.InjectLabelEnabled)
		fs.PrintDefaults()
	}
	var f injectionFlags
	f.bind(fs)
	file := fs.String("f", "", "manifest file, or - for standard input")
	native := fs.Bool("native-sidecar", true, "native sidecars (Kubernetes 1.29+) unless a pod's tandem.dev/native-sidecar annotation says otherwise")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *file == "" {
		fmt.Fprintln(stderr, "injector inject: flag -f is required (a file, or - for standard input)")
		return 2
	}
	in, err := f.injector(*native)
	if err != nil {
		fmt.Fprintf(stderr, "injector inject: %v\n", err)
		return 2
	}
	var data []byte
	if *file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		fmt.Fprintf(stderr, "injector inject: %v\n", err)
		return 1
	}
	out, err := injectManifests(in, data, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "injector inject: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "injector inject: %v\n", err)
		return 1
	}
	return 0
}

// document is one manifest of the input and its text.
type document struct {
	text   []byte
	isJSON bool
}

// injectManifests injects every document of data and returns them as a
// YAML stream. Documents nothing was added to are written as they came
// (YAML keeps its comments). Nothing is returned when one document fails.
func injectManifests(in *webhook.Injector, data []byte, notes io.Writer) ([]byte, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	n := 0
	for i, d := range docs {
		js, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue // only comments or whitespace
		}
		obj, err := decodeObject(js)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		changed, err := injectObject(in, obj, fmt.Sprintf("document %d", i+1), notes)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out.WriteString("---\n")
		}
		n++
		switch {
		case changed:
			js, err = json.Marshal(obj)
			if err == nil {
				js, err = yaml.JSONToYAML(js)
			}
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			out.Write(js)
		case d.isJSON:
			y, err := yaml.JSONToYAML(d.text)
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			out.Write(y)
		default:
			out.Write(bytes.TrimLeft(d.text, "\n"))
			if !bytes.HasSuffix(d.text, []byte("\n")) {
				out.WriteByte('\n')
			}
		}
	}
	return out.Bytes(), nil
}

// splitDocuments splits a YAML stream at its "---" lines, or a JSON
// stream into its values.
func splitDocuments(data []byte) ([]document, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var docs []document
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if err == io.EOF {
				return docs, nil
			}
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
			}
			docs = append(docs, document{text: raw, isJSON: true})
		}
	}
	var docs []document
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		text, err := r.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, document{text: text})
	}
}

// decodeObject decodes JSON keeping numbers as they are written.
func decodeObject(js []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	return obj, nil
}

// podTemplatePaths says where each workload keeps its pod template.
var podTemplatePaths = map[[2]string][]string{
	{"apps", "Deployment"}:        {"spec", "template"},
	{"apps", "StatefulSet"}:       {"spec", "template"},
	{"apps", "DaemonSet"}:         {"spec", "template"},
	{"apps", "ReplicaSet"}:        {"spec", "template"},
	{"", "ReplicationController"}: {"spec", "template"},
	{"batch", "Job"}:              {"spec", "template"},
	{"batch", "CronJob"}:          {"spec", "jobTemplate", "spec", "template"},
}

// injectObject injects obj in place if it is a pod, a workload or a List
// of them; it reports whether anything changed.
func injectObject(in *webhook.Injector, obj map[string]any, where string, notes io.Writer) (bool, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group := ""
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		group = g
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)
	where = fmt.Sprintf("%s (%s)", where, strings.TrimSpace(kind+" "+qualified(namespace, name)))

	switch {
	case group == "" && kind == "List":
		items, _ := obj["items"].([]any)
		changed := false
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return false, fmt.Errorf("%s: item %d is not an object", where, i+1)
			}
			c, err := injectObject(in, m, fmt.Sprintf("%s item %d", where, i+1), notes)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	case group == "" && kind == "Pod":
		return injectPodFields(in, obj, namespace, where, notes)
	}
	path, ok := podTemplatePaths[[2]string{group, kind}]
	if !ok {
		return false, nil
	}
	tmpl := obj
	for _, key := range path {
		next, ok := tmpl[key].(map[string]any)
		if !ok {
			return false, fmt.Errorf("%s: no pod template at %s", where, strings.Join(path, "."))
		}
		tmpl = next
	}
	return injectPodFields(in, tmpl, namespace, where, notes)
}

// injectPodFields injects the pod whose metadata and spec are in m (a Pod
// or a pod template) and writes them back.
func injectPodFields(in *webhook.Injector, m map[string]any, namespace, where string, notes io.Writer) (bool, error) {
	js, err := json.Marshal(map[string]any{"metadata": m["metadata"], "spec": m["spec"]})
	if err != nil {
		return false, fmt.Errorf("%s: %w", where, err)
	}
	pod := &corev1.Pod{}
	strict, err := sigsjson.UnmarshalStrict(js, pod)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return false, fmt.Errorf("%s: the pod does not decode: %w", where, err)
	}
	ns := webhook.Namespace{Name: namespace, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
	res, err := in.Inject(pod, ns, webhook.Reinject)
	if err != nil {
		return false, fmt.Errorf("%s: %w", where, err)
	}
	if !res.Injected {
		fmt.Fprintf(notes, "%s: not injected: %s\n", where, res.Skipped)
		return false, nil
	}
	for key, v := range map[string]any{"metadata": &pod.ObjectMeta, "spec": &pod.Spec} {
		js, err := json.Marshal(v)
		if err == nil {
			m[key], err = decodeObject(js)
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", where, err)
		}
	}
	return true, nil
}

func qualified(namespace, name string) string {
	if name != "" && namespace != "" {
		return namespace + "/" + name
	}
	return name
}
