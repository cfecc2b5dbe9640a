// Package webhooktest holds what the tests of the injector and of its
// admission webhook share: the benchmark pod, golden cases, and a canonical
// form of pods for comparisons.
package webhooktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// PC0 is the pod of Istio's BenchmarkInjectServePC0.
func PC0() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "test", Namespace: "shop"},
		Spec: corev1.PodSpec{
			Volumes:          []corev1.Volume{{Name: "v0"}},
			InitContainers:   []corev1.Container{{Name: "c0"}},
			Containers:       []corev1.Container{{Name: "c1"}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "p0"}},
		},
	}
}

// Case is a golden input: a Pod and, when the file has one, its Namespace.
type Case struct {
	Namespace *metav1.ObjectMeta
	Pod       []byte // JSON
}

// ReadCase reads a golden input file.
func ReadCase(t testing.TB, path string) Case {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ParseCase(t, path, data)
}

// ParseCase parses a golden input, the YAML documents of a Pod and maybe
// its Namespace; name names it in errors.
func ParseCase(t testing.TB, name string, data []byte) Case {
	t.Helper()
	path := name
	var c Case
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var meta metav1.PartialObjectMetadata
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch meta.Kind {
		case "Namespace":
			c.Namespace = &meta.ObjectMeta
		case "Pod":
			if c.Pod, err = yaml.YAMLToJSON(doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
	}
	if c.Pod == nil {
		t.Fatalf("%s: no Pod", path)
	}
	return c
}

// DecodePod decodes a pod as the API server does: field names matched
// exactly, each once.
func DecodePod(raw []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := jsonv2.Unmarshal(raw, pod); err != nil {
		return nil, err
	}
	return pod, nil
}

// Canonical decodes a pod as the API server does and encodes it again, for
// comparisons that do not depend on key order or on fields the API would
// not keep.
func Canonical(t testing.TB, raw []byte) string {
	t.Helper()
	pod, err := DecodePod(raw)
	if err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return string(MustJSON(t, pod))
}

// MustJSON encodes v.
func MustJSON(t testing.TB, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
